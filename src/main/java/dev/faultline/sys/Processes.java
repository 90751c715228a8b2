package dev.faultline.sys;

/**
 * Other processes: a pidfd to learn when one exits (it polls readable then), and signals. For a page
 * server that must notice its VMM peer is gone, whatever the peer's handshake left open.
 */
public final class Processes {
    private Processes() {}

    static final long SYS_KILL = 62, SYS_PIDFD_OPEN = 434;
    public static final int SIGKILL = 9;

    /** pidfd_open(2) of {@code pid} (close-on-exec by default): a descriptor that polls readable once the process has exited; -1 with errno set. */
    public static int pidfdOpen(int pid) {
        return (int) Libc.sys(Libc.errnoSegment(), SYS_PIDFD_OPEN, pid, 0, 0);
    }

    /** kill(2): 0, or -1 with errno ({@link Libc#lastErrno}). */
    public static int kill(int pid, int signal) {
        return (int) Libc.sys(Libc.errnoSegment(), SYS_KILL, pid, signal, 0);
    }
}
