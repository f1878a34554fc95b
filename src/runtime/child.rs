//! How topo starts the processes it owns (`--process` children, `topo
//! test`'s private brokers): each in its own process group, and killed by
//! the kernel when topo dies, so nothing outlives a `kill -9` of topo.

/// Puts the child started by `cmd` in its own process group and, on Linux,
/// asks the kernel to SIGKILL it when the spawning thread exits. `inherit`
/// is a descriptor of ours the child must keep across exec.
///
/// Spawn from a tokio worker thread (they live as long as the runtime),
/// never from the blocking pool, whose threads exit when idle.
pub fn own(cmd: &mut tokio::process::Command, inherit: Option<std::os::fd::RawFd>) {
    // Its own group: a Ctrl-C in the terminal reaches topo, which stops its
    // children in order, and stopping a child stops what it started.
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (fcntl, prctl, getppid)
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = inherit
                    && libc::fcntl(fd, libc::F_SETFD, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // topo may have died before the prctl took effect.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = inherit;
}
