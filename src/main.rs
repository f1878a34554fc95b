use clap::Parser;

fn main() {
    let cli = topo::cli::Cli::parse();
    std::process::exit(topo::cli::run(cli).code());
}
