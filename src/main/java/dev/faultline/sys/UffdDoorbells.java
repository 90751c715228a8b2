package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Pages that wake a userfaultfd handler from any sleep (poll() or a blocking read()) without a
 * second file descriptor: page i is registered (MISSING) with handler i's userfaultfd and never
 * served, so {@link #ring(int)} — a fault on it — is an event the handler reads like any other.
 * The fault is taken in the kernel (an eventfd read copies its counter into the page), so the ringing
 * thread waits in native code, where the JVM can reach a safepoint without it, until the handler
 * unregisters the page; a page already unregistered takes the write at once. A userfaultfd that
 * takes user-mode faults only ({@link Userfaultfd#USER_MODE_ONLY}) would fail that kernel fault
 * instead of delivering it; its doorbells ({@code userMode}) are rung by a store from native code,
 * a user-mode fault, which waits in native code just the same.
 *
 * <p>Threading: {@link #ring} from one thread at a time; {@link #address} from any.
 */
public final class UffdDoorbells implements AutoCloseable {
    private static final long PAGE = 4096;
    private final HostMemory pages;
    private final int eventFd;
    private final MemorySegment one;
    private final boolean userMode;

    /** Doorbells rung by a kernel-mode fault. */
    public UffdDoorbells(int count) { this(count, false); }

    /** @param userMode ring with a user-mode fault (for a userfaultfd opened {@link Userfaultfd#USER_MODE_ONLY}) */
    public UffdDoorbells(int count, boolean userMode) {
        this.userMode = userMode;
        if (count < 1) throw new IllegalArgumentException("at least one doorbell, got " + count);
        pages = HostMemory.anonymous(count * PAGE);
        try {
            eventFd = Libc.check(Libc.eventfd(0, Libc.EFD_CLOEXEC), "eventfd", "userfaultfd doorbells");
        } catch (RuntimeException e) {
            pages.close();
            throw e;
        }
        one = Arena.ofAuto().allocate(8, 8);
        one.set(ValueLayout.JAVA_LONG, 0, 1L);
    }

    /** Host address of doorbell {@code i} (one page). */
    public long address(int i) {
        if (i < 0 || i >= pages.size() / PAGE) throw new IndexOutOfBoundsException("doorbell " + i + " of " + pages.size() / PAGE);
        return pages.address() + i * PAGE;
    }

    public static long size() { return PAGE; }

    /** Faults on doorbell {@code i} (from the kernel, or in user mode) and returns once the fault is resolved (the page unregistered or served). */
    public void ring(int i) {
        if (userMode) {
            Libc.storeLongInNative(address(i), 1);
            return;
        }
        long at = address(i) - pages.address();
        MemorySegment capture = Libc.errnoSegment();
        Libc.check(capture, (int) Libc.write(capture, eventFd, one, 8), "write", "doorbell eventfd " + eventFd);
        Libc.check(capture, (int) Libc.read(capture, eventFd, pages.segment().asSlice(at, 8), 8), "read",
                "doorbell eventfd " + eventFd + " into doorbell " + i);
    }

    @Override
    public void close() {
        Libc.close(eventFd);
        pages.close();
    }
}
