package dev.faultline.sys;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * userfaultfd on this kernel: a Java thread that touches a registered page blocks in the kernel until
 * the test thread serves the fault, so every fault here is served from another thread.
 */
class UserfaultfdTest {
    static final long PAGE = 4096;

    static Userfaultfd openOrSkip(Userfaultfd.Source source) {
        try {
            return Userfaultfd.open(source);
        } catch (ErrnoException e) {
            assumeTrue(false, "needs userfaultfd through " + source + ": " + e.getMessage());
            throw e;
        }
    }

    /** Waits (poll, no timeout assertions) for the next events and returns how many were read. */
    static int awaitEvents(Userfaultfd uffd, Userfaultfd.Caller c, UffdEvents events) {
        while (true) {
            uffd.poll(c, -1, -1);
            int n = uffd.readEvents(c, events);
            if (n > 0) return n;
        }
    }

    @Test
    void shouldOfferTheSameFeaturesThroughTheSyscallAndTheDevice() {
        openOrSkip(Userfaultfd.Source.SYSCALL).close();
        openOrSkip(Userfaultfd.Source.DEVICE).close();
        long viaSyscall = Userfaultfd.offeredFeatures(Userfaultfd.Source.SYSCALL);
        long viaDevice = Userfaultfd.offeredFeatures(Userfaultfd.Source.DEVICE);
        assertEquals(viaSyscall, viaDevice);
        assertNotEquals(0, viaSyscall & Userfaultfd.FEATURE_EVENT_REMOVE, Userfaultfd.featureNames(viaSyscall).toString());
        System.out.println("userfaultfd features offered: 0x" + Long.toHexString(viaSyscall) + " " + Userfaultfd.featureNames(viaSyscall));
    }

    @Test
    void shouldRefuseAFeatureTheKernelDoesNotOfferWithEinval() {
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.SYSCALL)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> uffd.api(1L << 62));
            assertEquals("UFFDIO_API", e.call());
            assertEquals(Errno.EINVAL, e.errno());
        }
    }

    @Test
    void shouldReadNoEventsWithoutBlockingWhenNoneArePending() {
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.SYSCALL)) {
            uffd.api(0);
            Userfaultfd.Caller c = new Userfaultfd.Caller();
            UffdEvents events = new UffdEvents(8);
            assertEquals(0, uffd.readEvents(c, events));
            assertEquals(0, uffd.poll(c, -1, 0));
        }
    }

    @Test
    void shouldServeAMissingFaultOfAJavaThreadWithCopy() throws Exception {
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.SYSCALL); HostMemory mem = HostMemory.anonymous(16 * PAGE);
             Arena arena = Arena.ofConfined()) {
            uffd.api(Userfaultfd.FEATURE_THREAD_ID);
            long ioctls = uffd.register(mem.address(), mem.size(), Userfaultfd.REGISTER_MODE_MISSING);
            assertNotEquals(0, ioctls & (1L << Userfaultfd.IOCTL_COPY), Userfaultfd.ioctlNames(ioctls).toString());
            assertNotEquals(0, ioctls & (1L << Userfaultfd.IOCTL_ZEROPAGE));
            assertNotEquals(0, ioctls & (1L << Userfaultfd.IOCTL_WAKE));

            AtomicLong seen = new AtomicLong();
            AtomicInteger toucherTid = new AtomicInteger();
            Thread toucher = Thread.ofPlatform().start(() -> {
                toucherTid.set(Libc.gettid());
                seen.set(Libc.loadLongInNative(mem.address() + 3 * PAGE + 16)); // from native: safepoint-safe while it waits
            });
            Userfaultfd.Caller c = new Userfaultfd.Caller();
            UffdEvents events = new UffdEvents(4);
            assertEquals(1, awaitEvents(uffd, c, events));
            assertEquals(Userfaultfd.EVENT_PAGEFAULT, events.event(0));
            assertEquals(mem.address() + 3 * PAGE, events.pagefaultAddress(0), "page-aligned faulting address");
            assertEquals(0, events.pagefaultFlags(0) & Userfaultfd.PAGEFAULT_FLAG_WRITE, "a read fault");

            MemorySegment page = arena.allocate(PAGE, PAGE);
            page.set(ValueLayout.JAVA_LONG, 16, 0x0123456789abcdefL);
            assertEquals(PAGE, uffd.copy(c, mem.address() + 3 * PAGE, page.address(), PAGE, 0));
            toucher.join();
            assertEquals(0x0123456789abcdefL, seen.get());
            assertEquals(toucherTid.get(), events.pagefaultTid(0), "UFFD_FEATURE_THREAD_ID names the faulting thread");
            assertEquals(-Errno.EEXIST, uffd.copy(c, mem.address() + 3 * PAGE, page.address(), PAGE, 0),
                    "a second copy to a served page is the documented EEXIST race, not an exception");
        }
    }

    @Test
    void shouldServeAReadWithZeropageAndReportAWriteFaultAsWrite() throws Exception {
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.DEVICE); HostMemory mem = HostMemory.anonymous(4 * PAGE);
             Arena arena = Arena.ofConfined()) {
            uffd.api(0);
            uffd.register(mem.address(), mem.size(), Userfaultfd.REGISTER_MODE_MISSING);
            Userfaultfd.Caller c = new Userfaultfd.Caller();
            UffdEvents events = new UffdEvents(4);

            AtomicLong seen = new AtomicLong(-1);
            Thread reader = Thread.ofPlatform().start(() -> seen.set(Libc.loadLongInNative(mem.address() + PAGE)));
            awaitEvents(uffd, c, events);
            assertEquals(mem.address() + PAGE, events.pagefaultAddress(0));
            assertEquals(PAGE, uffd.zeropage(c, mem.address() + PAGE, PAGE, 0));
            reader.join();
            assertEquals(0, seen.get());

            Thread writer = Thread.ofPlatform().start(() -> Libc.storeLongInNative(mem.address() + 2 * PAGE + 8, 99));
            awaitEvents(uffd, c, events);
            assertEquals(Userfaultfd.EVENT_PAGEFAULT, events.event(0));
            assertNotEquals(0, events.pagefaultFlags(0) & Userfaultfd.PAGEFAULT_FLAG_WRITE, "a write fault");
            MemorySegment page = arena.allocate(PAGE, PAGE);
            page.set(ValueLayout.JAVA_LONG, 0, 7);
            uffd.copy(c, mem.address() + 2 * PAGE, page.address(), PAGE, 0);
            writer.join();
            assertEquals(7, mem.segment().get(ValueLayout.JAVA_LONG, 2 * PAGE), "the copied page");
            assertEquals(99, mem.segment().get(ValueLayout.JAVA_LONG, 2 * PAGE + 8), "and the store that faulted");
        }
    }

    @Test
    void shouldWakeAFaultServedWithDontwakeOnlyWhenAskedTo() throws Exception {
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.SYSCALL); HostMemory mem = HostMemory.anonymous(2 * PAGE)) {
            uffd.api(0);
            uffd.register(mem.address(), mem.size(), Userfaultfd.REGISTER_MODE_MISSING);
            Userfaultfd.Caller c = new Userfaultfd.Caller();
            UffdEvents events = new UffdEvents(4);
            AtomicLong seen = new AtomicLong(-1);
            Thread reader = Thread.ofPlatform().start(() -> seen.set(Libc.loadLongInNative(mem.address())));
            awaitEvents(uffd, c, events);
            assertEquals(PAGE, uffd.zeropage(c, mem.address(), PAGE, Userfaultfd.MODE_DONTWAKE));
            uffd.wake(c, mem.address(), PAGE);
            reader.join();
            assertEquals(0, seen.get());
        }
    }

    @Test
    void shouldContinueAMinorFaultOnMemfdMemoryWhosePageCacheIsFilled() throws Exception {
        long offered = Userfaultfd.offeredFeatures(Userfaultfd.Source.SYSCALL);
        assumeTrue((offered & Userfaultfd.FEATURE_MINOR_SHMEM) != 0, "kernel lacks UFFD_FEATURE_MINOR_SHMEM");
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.SYSCALL); HostMemory mem = HostMemory.memfd("minor-test", 4 * PAGE)) {
            // Fill the page cache through the mapping, then drop this mapping's PTEs: the data stays in the memfd.
            mem.segment().set(ValueLayout.JAVA_LONG, 2 * PAGE, 0x5151);
            assertEquals(0, Libc.madvise(mem.address(), mem.size(), Libc.MADV_DONTNEED));
            uffd.api(Userfaultfd.FEATURE_MINOR_SHMEM);
            long ioctls = uffd.register(mem.address(), mem.size(), Userfaultfd.REGISTER_MODE_MINOR);
            assertNotEquals(0, ioctls & (1L << Userfaultfd.IOCTL_CONTINUE), Userfaultfd.ioctlNames(ioctls).toString());

            Userfaultfd.Caller c = new Userfaultfd.Caller();
            UffdEvents events = new UffdEvents(4);
            AtomicLong seen = new AtomicLong(-1);
            Thread reader = Thread.ofPlatform().start(() -> seen.set(Libc.loadLongInNative(mem.address() + 2 * PAGE)));
            awaitEvents(uffd, c, events);
            assertEquals(Userfaultfd.EVENT_PAGEFAULT, events.event(0));
            assertNotEquals(0, events.pagefaultFlags(0) & Userfaultfd.PAGEFAULT_FLAG_MINOR, "a minor fault");
            assertEquals(mem.address() + 2 * PAGE, events.pagefaultAddress(0));
            assertEquals(PAGE, uffd.continueMapping(c, mem.address() + 2 * PAGE, PAGE, 0));
            reader.join();
            assertEquals(0x5151, seen.get(), "CONTINUE mapped the page-cache page");
        }
    }

    @Test
    void shouldReportARemoveEventWhenRegisteredMemoryIsDiscarded() throws Exception {
        try (Userfaultfd uffd = openOrSkip(Userfaultfd.Source.SYSCALL); HostMemory mem = HostMemory.anonymous(8 * PAGE);
             Arena arena = Arena.ofConfined()) {
            uffd.api(Userfaultfd.FEATURE_EVENT_REMOVE);
            uffd.register(mem.address(), mem.size(), Userfaultfd.REGISTER_MODE_MISSING);
            Userfaultfd.Caller c = new Userfaultfd.Caller();
            MemorySegment page = arena.allocate(PAGE, PAGE);
            assertEquals(PAGE, uffd.copy(c, mem.address() + 4 * PAGE, page.address(), PAGE, 0));

            // MADV_DONTNEED waits until the handler has read the REMOVE event: discard from another thread.
            Thread discarder = Thread.ofPlatform().start(() -> mem.discard(4 * PAGE, 2 * PAGE));
            UffdEvents events = new UffdEvents(4);
            awaitEvents(uffd, c, events);
            assertEquals(Userfaultfd.EVENT_REMOVE, events.event(0));
            assertEquals(mem.address() + 4 * PAGE, events.removeStart(0));
            assertEquals(mem.address() + 6 * PAGE, events.removeEnd(0));
            discarder.join();
        }
    }
}
