package dev.faultline.paging;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where a thread's time went, from the scheduler's own accounting (/proc/thread-self/schedstat):
 * time on a CPU, time runnable but waiting for one, and how many times it was switched in. Taken at
 * a thread's start and end (never per fault), the difference says what serving a fault costs the
 * thread and how long it queued behind other work: on a shared machine the second is most of the
 * noise between runs.
 */
public record ThreadTimes(long cpuNanos, long waitNanos, long switches) {
    public static final ThreadTimes NONE = new ThreadTimes(0, 0, 0);
    private static final Path SELF = Path.of("/proc/thread-self/schedstat");

    /** The calling thread's times so far, or {@link #NONE} when the kernel does not keep schedstat. */
    public static ThreadTimes ofCurrentThread() {
        try {
            String[] f = Files.readString(SELF).trim().split("\\s+");
            return new ThreadTimes(Long.parseLong(f[0]), Long.parseLong(f[1]), Long.parseLong(f[2]));
        } catch (IOException | RuntimeException e) {
            return NONE;
        }
    }

    public ThreadTimes minus(ThreadTimes earlier) {
        if (this == NONE || earlier == NONE) return NONE;
        return new ThreadTimes(cpuNanos - earlier.cpuNanos, waitNanos - earlier.waitNanos, switches - earlier.switches);
    }

    public ThreadTimes plus(ThreadTimes other) {
        return new ThreadTimes(cpuNanos + other.cpuNanos, waitNanos + other.waitNanos, switches + other.switches);
    }
}
