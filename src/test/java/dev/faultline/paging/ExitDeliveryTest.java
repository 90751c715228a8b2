package dev.faultline.paging;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.exit.BlockingFaultHandler;
import dev.faultline.paging.exit.ExitFaultHandler;
import dev.faultline.paging.exit.PresentHook;
import dev.faultline.sys.Errno;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

/**
 * Exit-based and blocking delivery through the shared core, driven by threads that play vCPUs
 * (no backend needed): each "vCPU" resolves memory-fault exits the way VcpuRunner would.
 */
class ExitDeliveryTest {
    static final long BASE = 1 << 20, PAGES = 256, SIZE = BASE + PAGES * FaultCore.PAGE;

    /** Hook that counts how often each page was marked present. */
    static final class CountingHook implements PresentHook {
        final AtomicIntegerArray marks = new AtomicIntegerArray((int) PAGES);
        @Override
        public void markPresent(long gpa, long len) {
            for (long g = gpa; g < gpa + len; g += FaultCore.PAGE) marks.incrementAndGet((int) ((g - BASE) / FaultCore.PAGE));
        }
    }

    static VcpuExit.MemoryFault fault(long gpa) {
        VcpuExit.MemoryFault f = new VcpuExit.MemoryFault();
        f.fill(MemoryFaultFlags.READ, gpa, 8, Errno.EFAULT, VcpuExit.MemoryFault.Origin.KERNEL);
        return f;
    }

    /** Every thread faults on every page, in its own order, starting together. */
    static void hammer(dev.faultline.vmm.MemoryFaultHandler handler, int threads) throws Exception {
        CyclicBarrier start = new CyclicBarrier(threads);
        List<Thread> ts = new ArrayList<>();
        List<Throwable> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
        for (int t = 0; t < threads; t++) {
            int v = t;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                    VcpuExit.MemoryFault f = new VcpuExit.MemoryFault();
                    for (long i = 0; i < PAGES; i++) {
                        long page = (i * (2 * v + 1) + v * 17) % PAGES;
                        f.fill(MemoryFaultFlags.WRITE, BASE + page * FaultCore.PAGE + 8 * v, 8, Errno.EFAULT, VcpuExit.MemoryFault.Origin.KERNEL);
                        String failure = handler.resolve(v, f);
                        if (failure != null) throw new AssertionError("vCPU " + v + ": " + failure);
                    }
                } catch (Throwable e) {
                    errors.add(e);
                }
            }));
        }
        for (Thread t : ts) t.join();
        if (!errors.isEmpty()) throw new AssertionError(errors.get(0));
    }

    static void assertPagesHoldSource(HostMemory ram) {
        for (long p = 0; p < PAGES; p++) {
            long gpa = BASE + p * FaultCore.PAGE;
            for (long off = 0; off < FaultCore.PAGE; off += 512) {
                assertEquals(StampSource.word(gpa, off, 1), ram.segment().get(ValueLayout.JAVA_LONG, gpa + off),
                        String.format("word at gpa 0x%x", gpa + off));
            }
        }
    }

    @Test
    void shouldFetchEachPageExactlyOnceWhenManyVcpusFaultOnTheSamePagesAtOnce() throws Exception {
        int vcpus = 8;
        StampSource source = new StampSource(BASE, PAGES);
        CountingHook hook = new CountingHook();
        try (HostMemory ram = HostMemory.anonymous(SIZE)) {
            FaultCore core = new FaultCore(source, BASE, PAGES * FaultCore.PAGE, vcpus, Prefetch.NONE, false);
            hammer(new ExitFaultHandler(core, ram, vcpus, hook), vcpus);
            PagingStats stats = new PagingStats(core);
            assertEquals(PAGES, source.totalFills(), "source fills");
            for (int p = 0; p < PAGES; p++) {
                assertEquals(1, source.fills.get(p), "fills of page " + p);
                assertTrue(hook.marks.get(p) >= 1, "page " + p + " marked present");
            }
            assertEquals(PAGES, stats.pagesInstalled(), "pages installed");
            assertEquals(PAGES, core.states().countPresent());
            assertPagesHoldSource(ram);
        }
    }

    /** 4 vCPUs hammering shared pages, served by 1, 2 or 4 handler threads (lanes) racing on them: each page filled once. */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(ints = {1, 2, 4})
    void shouldServeEveryVcpuThroughItsHandlerThreadInBlockingDelivery(int handlers) throws Exception {
        int vcpus = 4;
        StampSource source = new StampSource(BASE, PAGES);
        CountingHook hook = new CountingHook();
        try (HostMemory ram = HostMemory.anonymous(SIZE)) {
            FaultCore core = new FaultCore(source, BASE, PAGES * FaultCore.PAGE, vcpus, Prefetch.NONE, false);
            try (BlockingFaultHandler handler = handlers == vcpus ? new BlockingFaultHandler(core, ram, vcpus, hook)
                    : new BlockingFaultHandler(core, ram, vcpus, hook, handlers, handlers == 2)) {
                assertEquals(handlers, handler.handlers());
                hammer(handler, vcpus);
            }
            assertEquals(PAGES, source.totalFills());
            for (int p = 0; p < PAGES; p++) assertEquals(1, source.fills.get(p), "fills of page " + p);
            assertEquals(handlers, core.lanes().size(), "one lane per handler thread");
            long installed = 0;
            for (FaultCore.Lane l : core.lanes()) installed += l.stats().pagesInstalled();
            assertEquals(PAGES, installed, "every page installed by exactly one of the handlers");
            assertPagesHoldSource(ram);
        }
        FaultCore other = new FaultCore(new StampSource(BASE, PAGES), BASE, PAGES * FaultCore.PAGE, vcpus, Prefetch.NONE, false);
        assertThrows(IllegalArgumentException.class, () -> new BlockingFaultHandler(other, null, vcpus, hook, vcpus + 1, false), "more threads than vCPUs");
    }

    @Test
    void shouldReportAFaultOutsideThePagedRangeInsteadOfResolvingIt() {
        try (HostMemory ram = HostMemory.anonymous(SIZE)) {
            FaultCore core = new FaultCore(ZeroSource.INSTANCE, BASE, PAGES * FaultCore.PAGE, 1, Prefetch.NONE, false);
            ExitFaultHandler h = new ExitFaultHandler(core, ram, 1, (g, l) -> { });
            String failure = h.resolve(0, fault(0x1000));
            assertNotNull(failure);
            assertTrue(failure.contains("0x1000") && failure.contains("outside"), failure);
        }
    }

    @Test
    void shouldStopTheVcpuWithTheFileAndOffsetWhenTheSourceFails() throws Exception {
        java.nio.file.Path f = java.nio.file.Files.createTempFile("faultline-short-", ".img");
        try (HostMemory ram = HostMemory.anonymous(SIZE); FileSource src = FileSource.open(f, SIZE)) {
            java.nio.file.Files.write(f, new byte[] {1, 2, 3}); // grew after open: the source still believes 0 bytes
            PageSource failing = new PageSource() {
                @Override public void fill(long gpa, java.lang.foreign.MemorySegment dst, long off, long len) {
                    throw new PageSourceException("page file " + f + ": pread of " + len + " bytes at offset 0x" + Long.toHexString(gpa) + " failed: EIO");
                }
                @Override public String describe() { return "failing"; }
            };
            FaultCore core = new FaultCore(failing, BASE, PAGES * FaultCore.PAGE, 1, Prefetch.NONE, false);
            String failure = new ExitFaultHandler(core, ram, 1, (g, l) -> { }).resolve(0, fault(BASE + 0x3000));
            assertNotNull(failure);
            assertTrue(failure.contains(f.toString()) && failure.contains("0x103000"), failure);
            assertEquals(PageStates.MISSING, core.states().get(3), "a failed fetch leaves the page missing");
            assertTrue(src.isZero(BASE, FaultCore.PAGE), "a source past its file's end reads as zeros");
        } finally {
            java.nio.file.Files.deleteIfExists(f);
        }
    }
}
