package dev.faultline.vmm;

import dev.faultline.sys.Errno;
import dev.faultline.sys.Libc;

/**
 * How a VMM thread is scheduled against the vCPU threads, which on a small host keep every CPU
 * busy with guest code: a thread woken behind them waits for a time slice (milliseconds) unless it
 * is put first. Applied by the thread itself ({@link #applyToCurrentThread}). Two classes have names:
 * <ul>
 *   <li>{@link #FAULT_PATH}: threads a stopped vCPU waits for (a userfaultfd handler, a migration
 *       source's urgent-request server). They sleep until a fault comes and then run a few
 *       microseconds: SCHED_FIFO, so a wake-up preempts guest code at once. Such a thread must not
 *       spin while it has nothing to do (it would take a CPU from the vCPUs for as long as it spins;
 *       a short bounded poll for a reply its waiting vCPU needs is fine).</li>
 *   <li>{@link #TRANSFER}: threads that move bulk memory the guest needs soon (a migration's push and
 *       the destination's installer of pushed pages). They need far less CPU than the guest (about
 *       0.1-0.3 CPU-seconds per GiB each here) but must get it when the data is there: nice -10.</li>
 * </ul>
 * Raising a priority needs CAP_SYS_NICE (root here) and, for SCHED_FIFO, a real-time budget in the
 * thread's cgroup; a refused setting leaves the thread as it was, and {@link #applyAndDescribe}
 * says so.
 */
public record ThreadPriority(Policy policy, int value) {
    public enum Policy { NORMAL, NICE, FIFO, IDLE }

    public static final ThreadPriority NORMAL = new ThreadPriority(Policy.NORMAL, 0);
    /** SCHED_IDLE: runs only when its CPU has nothing else to run; any wake-up of another thread there preempts it. */
    public static final ThreadPriority IDLE = new ThreadPriority(Policy.IDLE, 0);
    public static final ThreadPriority FAULT_PATH = fifo(10);
    public static final ThreadPriority TRANSFER = nice(-10);

    public ThreadPriority {
        if (policy == Policy.FIFO && (value < 1 || value > 99)) throw new IllegalArgumentException("SCHED_FIFO priority is 1..99, got " + value);
        if (policy == Policy.NICE && (value < -20 || value > 19)) throw new IllegalArgumentException("nice is -20..19, got " + value);
        if ((policy == Policy.NORMAL || policy == Policy.IDLE) && value != 0) {
            throw new IllegalArgumentException(policy.name().toLowerCase(java.util.Locale.ROOT) + " scheduling takes no value, got " + value);
        }
    }

    public static ThreadPriority fifo(int priority) { return new ThreadPriority(Policy.FIFO, priority); }
    public static ThreadPriority nice(int nice) { return new ThreadPriority(Policy.NICE, nice); }

    /**
     * Parses "normal", "nice:N" or "fifo:P" (command-line form).
     * @throws IllegalArgumentException naming what is wrong
     */
    public static ThreadPriority parse(String text) {
        String v = text.trim().toLowerCase(java.util.Locale.ROOT);
        try {
            if (v.equals("normal")) return NORMAL;
            if (v.equals("idle")) return IDLE;
            if (v.startsWith("nice:")) return nice(Integer.parseInt(v.substring(5)));
            if (v.startsWith("fifo:")) return fifo(Integer.parseInt(v.substring(5)));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + text + "': the number after the colon is not an integer");
        }
        throw new IllegalArgumentException("'" + text + "' is not normal, idle, nice:N or fifo:P");
    }

    /** Applies this to the calling thread; returns 0 or the errno of the refusal (the thread is then unchanged). */
    public int applyToCurrentThread() {
        return switch (policy) {
            case NORMAL -> 0;
            case NICE -> Libc.niceCurrentThread(value);
            case FIFO -> Libc.scheduleCurrentThread(Libc.SCHED_FIFO, value);
            case IDLE -> Libc.scheduleCurrentThread(Libc.SCHED_IDLE, 0);
        };
    }

    /** Applies this to the calling thread and says what it got: "SCHED_FIFO 10", or "normal (SCHED_FIFO 10 refused: EPERM)". */
    public String applyAndDescribe() {
        int errno = applyToCurrentThread();
        return errno == 0 ? toString() : "normal (" + this + " refused: " + Errno.name(errno) + ")";
    }

    /**
     * For a thread that serves a fault while it is also something else (a vCPU thread fetching its own
     * page under exit delivery): {@link #FAULT_PATH} until {@link #endFaultPath()}, so that the reply's
     * wake-up preempts the bulk-transfer threads as a handler's would. One system call, no allocation
     * after a thread's first; returns 0 or the errno of a refusal (the thread is then unchanged).
     */
    public static int beginFaultPath() {
        return Libc.scheduleCurrentThread(Libc.SCHED_FIFO, FAULT_PATH.value());
    }

    /** Back to SCHED_OTHER after {@link #beginFaultPath()} (nice is untouched by it): one system call. */
    public static void endFaultPath() {
        Libc.scheduleCurrentThread(Libc.SCHED_OTHER, 0);
    }

    /** Puts the calling thread back to SCHED_OTHER at nice 0 (a thread that goes on with other work). */
    public static void resetCurrentThread() {
        Libc.scheduleCurrentThread(Libc.SCHED_OTHER, 0);
        Libc.niceCurrentThread(0);
    }

    @Override
    public String toString() {
        return switch (policy) {
            case NORMAL -> "normal";
            case NICE -> "nice " + value;
            case FIFO -> "SCHED_FIFO " + value;
            case IDLE -> "SCHED_IDLE";
        };
    }
}
