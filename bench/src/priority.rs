//! Real-time scheduling for the cold-start rounds, so other jobs on the machine's 2 cores (a build, CI) stay
//! out of figures measured in milliseconds. Every process under test (the echo floor included) and the
//! bench's own threads (mock Runtime API, embedded engine) run at the same priority, so the ratios stay fair;
//! Lambda gives a function's sandbox its own CPU share, which is what this approximates.

/// `SCHED_FIFO` priority: above every normal process, below the kernel's own real-time threads.
const PRIORITY: libc::c_int = 50;

/// While alive, every thread of this process runs under `SCHED_FIFO` (threads and processes started meanwhile
/// inherit it); dropped, every thread goes back to the normal policy (the bench sets no other).
pub struct Realtime {
    pub applied: bool,
}

impl Realtime {
    /// Needs root or `CAP_SYS_NICE`; without either, nothing changes and `applied` is false.
    pub fn raise() -> Realtime {
        let applied = set_every_thread(libc::SCHED_FIFO, PRIORITY);
        if !applied {
            set_every_thread(libc::SCHED_OTHER, 0);
        }
        Realtime { applied }
    }

    /// One line for the report: how the cold starts were scheduled.
    pub fn describe(&self) -> String {
        if self.applied {
            format!(
                "Cold starts ran under SCHED_FIFO priority {PRIORITY} (bench threads and every process under test, \
                 the echo floor included), so other jobs on the machine stay out of the figures."
            )
        } else {
            "Cold starts ran at normal priority (no root or CAP_SYS_NICE for SCHED_FIFO): other jobs on the \
             machine are in the figures."
                .into()
        }
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if self.applied {
            set_every_thread(libc::SCHED_OTHER, 0);
        }
    }
}

/// Sets the policy of every thread listed in /proc/self/task; true when every live one accepted it (a thread
/// that exits between the listing and the call, ESRCH, is no refusal).
fn set_every_thread(policy: libc::c_int, priority: libc::c_int) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return false };
    let param = libc::sched_param { sched_priority: priority };
    let mut all = true;
    for tid in tasks.flatten().filter_map(|task| task.file_name().to_str()?.parse::<libc::pid_t>().ok()) {
        // SAFETY: `param` is a valid sched_param for the call's duration; a thread that has exited meanwhile
        // only makes the call fail (ESRCH).
        let status = unsafe { libc::sched_setscheduler(tid, policy, &param) };
        all &= status == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    all
}
