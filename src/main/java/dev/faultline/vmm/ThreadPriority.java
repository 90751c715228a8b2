package dev.faultline.vmm;

import dev.faultline.sys.Errno;
import dev.faultline.sys.Libc;

/**
 * How much of the CPU a VMM thread gets against the vCPU threads, which on a small host keep every
 * CPU busy with guest code. Three classes, each applied by the thread itself
 * ({@link #applyToCurrentThread}), best first, falling back when the host refuses:
 * <ul>
 *   <li>{@link #FAULT_PATH}: threads a stopped vCPU waits for (a userfaultfd handler, a migration
 *       source's urgent-request server). They sleep until a fault comes and then run a few
 *       microseconds: SCHED_FIFO priority {@value #FIFO_PRIORITY}, so a wake-up preempts guest code at
 *       once instead of waiting for a time slice; else nice {@value #FAULT_NICE}; else unchanged.
 *       Such a thread must not spin while it has nothing to do: it would take a CPU from the vCPUs
 *       for as long as it spins (a short bounded poll for a reply a waiting vCPU needs is fine).</li>
 *   <li>{@link #TRANSFER}: threads that move bulk memory the guest will need soon (a migration's
 *       background push and the destination's installer of pushed pages). They need far less CPU
 *       than the guest (about 0.2 CPU-seconds per GiB each here) but must get it when data is ready,
 *       or the transfer crawls behind two busy vCPUs: nice {@value #TRANSFER_NICE}; else unchanged.</li>
 * </ul>
 * Raising a priority needs CAP_SYS_NICE (root here) and, for SCHED_FIFO, a real-time budget in the
 * thread's cgroup; the result says what the thread got.
 */
public enum ThreadPriority {
    FAULT_PATH, TRANSFER;

    public static final int FIFO_PRIORITY = 10;
    public static final int FAULT_NICE = -15;
    public static final int TRANSFER_NICE = -10;

    /** What a thread got: a description such as "SCHED_FIFO 10" or "default (nice -10 refused: EPERM)". */
    public record Applied(ThreadPriority asked, boolean raised, String description) {}

    /** Applies this class to the calling thread; never throws for a refusal, says what happened instead. */
    public Applied applyToCurrentThread() {
        return switch (this) {
            case FAULT_PATH -> {
                int e = Libc.scheduleCurrentThread(Libc.SCHED_FIFO, FIFO_PRIORITY);
                if (e == 0) yield new Applied(this, true, "SCHED_FIFO " + FIFO_PRIORITY);
                int n = Libc.niceCurrentThread(FAULT_NICE);
                if (n == 0) yield new Applied(this, true, "nice " + FAULT_NICE + " (SCHED_FIFO refused: " + Errno.name(e) + ")");
                yield new Applied(this, false, "default (SCHED_FIFO refused: " + Errno.name(e) + ", nice " + FAULT_NICE + " refused: " + Errno.name(n) + ")");
            }
            case TRANSFER -> nice(TRANSFER_NICE);
        };
    }

    private Applied nice(int value) {
        int e = Libc.niceCurrentThread(value);
        return e == 0 ? new Applied(this, value < 0, "nice " + value) : new Applied(this, false, "default (nice " + value + " refused: " + Errno.name(e) + ")");
    }

    /** Puts the calling thread back to SCHED_OTHER at nice 0 (a thread that goes on with other work). */
    public static void resetCurrentThread() {
        Libc.scheduleCurrentThread(Libc.SCHED_OTHER, 0);
        Libc.niceCurrentThread(0);
    }
}
