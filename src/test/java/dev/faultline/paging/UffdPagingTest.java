package dev.faultline.paging;

import dev.faultline.sys.Libc;
import dev.faultline.vmm.ThreadPriority;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.MemoryPreparer;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CyclicBarrier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * userfaultfd delivery on guest RAM touched by plain host threads (they fault exactly as a vCPU's
 * KVM_RUN does: the thread sleeps until a handler installs the page). No KVM needed.
 */
class UffdPagingTest {
    static final long BASE = 1 << 20, PAGE = FaultCore.PAGE;

    static void assumeUserfaultfd() {
        try {
            Userfaultfd.open().close();
        } catch (ErrnoException e) {
            assumeTrue(false, "needs userfaultfd: " + e.getMessage());
        }
    }

    record Setup(GuestRam ram, FaultCore core, UffdPager pager, MemoryPreparer.Session session) implements AutoCloseable {
        @Override
        public void close() {
            session.close();
            ram.close();
        }
    }

    static Setup start(long pages, GuestRam.Backing backing, PageSource source, Prefetch prefetch, UffdPager.Mode mode, int handlers, int vcpus,
                       boolean record) {
        return start(pages, backing, source, prefetch, vcpus, record, new UffdPager.Config(mode, handlers, 0, false, List.of(), UffdPager.Pinning.NONE));
    }

    static Setup start(long pages, GuestRam.Backing backing, PageSource source, Prefetch prefetch, int vcpus, boolean record,
                       UffdPager.Config config) {
        assumeUserfaultfd();
        GuestRam ram = GuestRam.allocate(BASE + pages * PAGE, backing);
        FaultCore core = new FaultCore(source, BASE, pages * PAGE, vcpus, prefetch, record);
        UffdPager pager = new UffdPager(core, config);
        MemoryPreparer.Session s = pager.prepare(new MemoryPreparer.Context(null, ram, vcpus, reason -> {
            throw new AssertionError("a handler asked to stop the machine: " + reason);
        }));
        return new Setup(ram, core, pager, s);
    }

    /**
     * Reads a word of registered RAM the way a vCPU would wait for it: from native code
     * ({@link Libc#loadLongInNative}), so a thread waiting in a userfault never holds up a safepoint.
     */
    static long load(MemorySegment ram, long offset) {
        if (offset < 0 || offset + 8 > ram.byteSize()) throw new IndexOutOfBoundsException(offset);
        return Libc.loadLongInNative(ram.address() + offset);
    }

    /** Threads each read one word of every page, in their own order, all starting at once. */
    static void touchAll(MemorySegment ram, long pages, int threads) throws Exception {
        CyclicBarrier go = new CyclicBarrier(threads);
        List<Throwable> errors = new CopyOnWriteArrayList<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int v = t;
            ts.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                    long sink = 0;
                    for (long i = 0; i < pages; i++) {
                        long p = (v % 2 == 0) ? (i * (2 * v + 1)) % pages : pages - 1 - i;
                        sink += load(ram, BASE + p * PAGE + 8L * v);
                    }
                    if (sink == 42) System.out.print("");
                } catch (Throwable e) {
                    errors.add(e);
                }
            }));
        }
        for (Thread t : ts) t.join();
        if (!errors.isEmpty()) throw new AssertionError(errors.get(0));
    }

    static void assertStamped(MemorySegment ram, long pages, int generation) {
        for (long p = 0; p < pages; p++) {
            long gpa = BASE + p * PAGE;
            for (long off = 0; off < PAGE; off += 8) {
                long want = StampSource.word(gpa, off, generation);
                long have = load(ram, gpa + off);
                if (want != have) fail(String.format("word at gpa 0x%x: expected 0x%x, found 0x%x", gpa + off, want, have));
            }
        }
    }

    @Test
    void shouldInstallEveryPageExactlyOnceWhenManyThreadsHammerTheSamePages() throws Exception {
        long pages = 2048;
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, source, Prefetch.NONE, UffdPager.Mode.MISSING, 2, 8, false)) {
            touchAll(s.ram().segment(), pages, 8);
            s.session().close();
            PagingStats stats = new PagingStats(s.core());
            assertEquals(pages, stats.pagesInstalled(), "pages installed");
            assertEquals(pages, source.totalFills(), "source fills");
            for (int p = 0; p < pages; p++) assertEquals(1, source.fills.get(p), "fills of page " + p);
            assertStamped(s.ram().segment(), pages, 1);
            assertNull(s.pager().failure());
        }
    }

    @Test
    void shouldLeaveRamByteExactlyEqualToTheFileIncludingHolesAndTheTailPastItsEnd(@TempDir Path dir) throws Exception {
        long pages = 1024;
        long ramSize = BASE + pages * PAGE;
        Path file = dir.resolve("ram.img");
        Random rnd = new Random(5);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            byte[] page = new byte[(int) PAGE];
            long fileEnd = ramSize - 100 * PAGE - 1000; // the file stops mid-page, 100 pages before RAM does
            for (long gpa = BASE; gpa < fileEnd; gpa += PAGE) {
                if ((gpa / PAGE) % 5 == 0) continue; // a hole
                rnd.nextBytes(page);
                ch.write(ByteBuffer.wrap(page, 0, (int) Math.min(PAGE, fileEnd - gpa)), gpa);
            }
            ch.truncate(fileEnd);
            if (ch.size() < fileEnd) ch.write(ByteBuffer.allocate(1), fileEnd - 1);
        }
        try (FileSource src = FileSource.open(file, ramSize);
             Setup s = start(pages, GuestRam.Backing.ANONYMOUS, src, Prefetch.DEFAULT_READAHEAD, UffdPager.Mode.MISSING, 2, 4, false)) {
            touchAll(s.ram().segment(), pages, 4);
            s.session().close();
            byte[] want = new byte[(int) (pages * PAGE)];
            byte[] f = Files.readAllBytes(file);
            System.arraycopy(f, (int) BASE, want, 0, f.length - (int) BASE);
            MemorySegment have = s.ram().segment().asSlice(BASE, pages * PAGE);
            assertEquals(GuestRam.sha256(MemorySegment.ofArray(want)), GuestRam.sha256(have), "SHA-256 of RAM above 1 MiB vs the file");
            assertEquals(-1, MemorySegment.ofArray(want).mismatch(have), "first differing byte");
        }
    }

    @Test
    void shouldServeMinorFaultsFromThePageCacheOfMemfdRamWithContinue() throws Exception {
        long pages = 512;
        StampSource source = new StampSource(BASE, pages);
        assumeUserfaultfd();
        // Page cache already populated (as after a restore): faults on these pages are MINOR faults.
        try (Setup s = startMinorWithPopulatedCache(pages, source)) {
            touchAll(s.ram().segment(), pages, 3);
            s.session().close();
            PagingStats stats = new PagingStats(s.core());
            assertEquals(pages, stats.pagesInstalled());
            assertTrue(stats.minorEvents() > 0, "minor events: " + stats.minorEvents());
            assertEquals(0, stats.missingEvents(), "no MISSING event when every page is in the page cache");
            assertStamped(s.ram().segment(), pages, 1);
        }
    }

    private static Setup startMinorWithPopulatedCache(long pages, StampSource source) {
        GuestRam ram = GuestRam.allocate(BASE + pages * PAGE, GuestRam.Backing.MEMFD);
        try (var alias = ram.memory().alias()) {
            alias.segment().asSlice(BASE, pages * PAGE).fill((byte) 0x5a); // stale data the source must replace
        }
        FaultCore core = new FaultCore(source, BASE, pages * PAGE, 3, Prefetch.NONE, false);
        UffdPager pager = new UffdPager(core, new UffdPager.Config(UffdPager.Mode.MINOR, 1, 0, false, List.of(), UffdPager.Pinning.NONE));
        MemoryPreparer.Session session = pager.prepare(new MemoryPreparer.Context(null, ram, 3, r -> { throw new AssertionError(r); }));
        return new Setup(ram, core, pager, session);
    }

    @Test
    void shouldServeMissingPagesOfMemfdRamInMinorModeToo() throws Exception {
        long pages = 256;
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.MEMFD, source, Prefetch.NONE, UffdPager.Mode.MINOR, 1, 2, false)) {
            touchAll(s.ram().segment(), pages, 2);
            s.session().close();
            assertEquals(pages, new PagingStats(s.core()).pagesInstalled());
            assertStamped(s.ram().segment(), pages, 1);
        }
    }

    @Test
    void shouldInstallAContiguousRunOnAFaultWithReadahead() throws Exception {
        long pages = 1024;
        Prefetch ra = new Prefetch.Readahead(8, 64, 0);
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, source, ra, UffdPager.Mode.MISSING, 1, 1, false)) {
            assertEquals(StampSource.word(BASE + 100 * PAGE, 0, 1), load(s.ram().segment(), BASE + 100 * PAGE));
            s.session().close(); // the handler has finished: its page states are final
            for (long p = 100; p < 108; p++) assertTrue(s.core().states().isPresent(p), "page " + p + " installed by the first fault");
            assertFalse(s.core().states().isPresent(108), "the window of a first fault is 8 pages");
            assertFalse(s.core().states().isPresent(99), "readahead goes forward");
            PagingStats stats = new PagingStats(s.core());
            assertEquals(1, stats.faults());
            assertEquals(8, stats.pagesInstalled());
            assertEquals(1, s.core().lanes().get(0).stats().installCalls(), "one install call for the run");
            assertStamped(s.ram().segment().asSlice(0, BASE + 108 * PAGE), 0, 1);
            for (long p = 100; p < 108; p++) assertEquals(1, source.fills.get((int) p));
        }
    }

    @Test
    void shouldNeedFarFewerFaultsThanPagesForASequentialReaderWithReadahead() throws Exception {
        long pages = 1024;
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, source, new Prefetch.Readahead(8, 64, 0), UffdPager.Mode.MISSING, 1, 1, false)) {
            for (long p = 0; p < pages; p++) load(s.ram().segment(), BASE + p * PAGE);
            s.session().close();
            PagingStats stats = new PagingStats(s.core());
            assertEquals(pages, stats.pagesInstalled());
            assertTrue(stats.faults() <= 4 + pages / 64, "windows grow 8, 16, 32, 64: " + stats.faults() + " faults for " + pages + " pages");
            assertStamped(s.ram().segment(), pages, 1);
            for (int p = 0; p < pages; p++) assertEquals(1, source.fills.get(p));
        }
    }

    @Test
    void shouldRecordFirstTouchesInOrderAndRoundTripThemThroughAFile(@TempDir Path dir) throws Exception {
        long pages = 64;
        long[] order = {5, 3, 60, 61, 62, 0, 17};
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, new StampSource(BASE, pages), Prefetch.NONE, UffdPager.Mode.MISSING, 1, 1, true)) {
            for (long p : order) load(s.ram().segment(), BASE + p * PAGE);
            load(s.ram().segment(), BASE + 5 * PAGE + 8); // a second touch is not a first touch
            s.session().close();
            WorkingSet ws = s.core().recordedWorkingSet();
            long[] gpas = new long[order.length];
            for (int i = 0; i < order.length; i++) gpas[i] = BASE + order[i] * PAGE;
            assertArrayEquals(gpas, ws.gpas());
            Path f = dir.resolve("ws.flws");
            ws.write(f);
            assertEquals(ws, WorkingSet.read(f));
            Files.write(f, java.util.Arrays.copyOf(Files.readAllBytes(f), 30));
            PageSourceException e = assertThrows(PageSourceException.class, () -> WorkingSet.read(f));
            assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
        }
    }

    @Test
    void shouldPrefetchAReplayedWorkingSetBeforeTheThreadTouchesIt() throws Exception {
        long pages = 128;
        WorkingSet ws = WorkingSet.of(BASE + 7 * PAGE, BASE + 8 * PAGE, BASE + 9 * PAGE, BASE + 100 * PAGE);
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, source, new Prefetch.Replay(ws, 16), UffdPager.Mode.MISSING, 1, 1, false)) {
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (!s.core().states().isPresent(100) && System.nanoTime() < deadline) Thread.sleep(1);
            for (long p : new long[] {7, 8, 9, 100}) assertTrue(s.core().states().isPresent(p), "page " + p + " prefetched");
            assertFalse(s.core().states().isPresent(10), "only the working set is prefetched");
            assertEquals(StampSource.word(BASE + 8 * PAGE, 16, 1), load(s.ram().segment(), BASE + 8 * PAGE + 16));
            s.session().close();
            PagingStats stats = new PagingStats(s.core());
            assertEquals(4, stats.prefetchPages());
            assertEquals(0, stats.faults(), "no fault: the pages were there before the touch");
        }
    }

    static UffdPager.Config waitingIn(UffdPager.Waiting waiting, int handlers) {
        return new UffdPager.Config(UffdPager.Mode.MISSING, handlers, 0, false, List.of(), UffdPager.Pinning.NONE,
                ThreadPriority.NORMAL, waiting);
    }

    @ParameterizedTest
    @EnumSource(value = UffdPager.Waiting.class, names = {"READ", "POLL"})
    void shouldInstallEveryPageExactlyOnceWhetherHandlersSleepInReadOrInPoll(UffdPager.Waiting waiting) throws Exception {
        long pages = 1024;
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, source, Prefetch.NONE, 4, false, waitingIn(waiting, 2))) {
            assertEquals(waiting == UffdPager.Waiting.READ, s.pager().config().sleepsInRead(Prefetch.NONE));
            touchAll(s.ram().segment(), pages, 4);
            s.session().close();
            PagingStats stats = new PagingStats(s.core());
            assertEquals(pages, stats.pagesInstalled(), "pages installed");
            for (int p = 0; p < pages; p++) assertEquals(1, source.fills.get(p), "fills of page " + p);
            assertStamped(s.ram().segment(), pages, 1);
            assertNull(s.pager().failure());
            for (FaultCore.Lane lane : s.core().lanes()) {
                ThreadTimes t = lane.stats().threadTimes();
                assertNotEquals(ThreadTimes.NONE, t, "the handler's scheduler times of " + lane.name());
                assertTrue(t.cpuNanos() > 0 && t.switches() > 0, lane.name() + ": " + t);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = UffdPager.Waiting.class, names = {"READ", "POLL"})
    void shouldStopHandlersThatNeverSawAFault(UffdPager.Waiting waiting) {
        Setup s = start(16, GuestRam.Backing.ANONYMOUS, ZeroSource.INSTANCE, Prefetch.NONE, 1, false, waitingIn(waiting, 3));
        assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), s::close, "closing wakes each handler through its doorbell");
        assertNull(s.pager().failure());
        assertEquals(0, new PagingStats(s.core()).faults());
    }

    @Test
    void shouldSleepInReadOnlyWhenAHandlerHasNothingButFaultsToDo() {
        UffdPager.Config auto = new UffdPager.Config(UffdPager.Mode.MISSING, 1, 0, false, List.of(), UffdPager.Pinning.NONE);
        assertTrue(auto.sleepsInRead(Prefetch.NONE));
        assertTrue(auto.sleepsInRead(new Prefetch.Readahead(8, 64, 0)), "readahead done on the fault itself");
        assertFalse(auto.sleepsInRead(new Prefetch.Readahead(8, 64, 512)), "background readahead needs turns between events");
        assertFalse(auto.sleepsInRead(new Prefetch.Replay(WorkingSet.of(BASE), 16)));
        UffdPager.Config spinning = new UffdPager.Config(UffdPager.Mode.MISSING, 1, 20_000, false, List.of(), UffdPager.Pinning.NONE);
        assertFalse(spinning.sleepsInRead(Prefetch.NONE), "a spinning handler polls");
        UffdPager.Config read = waitingIn(UffdPager.Waiting.READ, 1);
        assertThrows(IllegalArgumentException.class, () -> read.sleepsInRead(new Prefetch.Readahead(8, 64, 512)));
        assertThrows(IllegalArgumentException.class, () -> new UffdPager.Config(UffdPager.Mode.MISSING, 1, 20_000, false, List.of(),
                UffdPager.Pinning.NONE, ThreadPriority.NORMAL, UffdPager.Waiting.READ));
        IllegalArgumentException fifoSpin = assertThrows(IllegalArgumentException.class, () -> new UffdPager.Config(UffdPager.Mode.MISSING,
                1, 20_000, false, List.of(), UffdPager.Pinning.NONE, ThreadPriority.fifo(10), UffdPager.Waiting.POLL));
        assertTrue(fifoSpin.getMessage().contains("must not spin"), fifoSpin.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ThreadPriority.fifo(0));
        assertThrows(IllegalArgumentException.class, () -> ThreadPriority.nice(20));
    }

    @Test
    void shouldRunHandlersUnderSchedFifoWhenAskedOrSayWhyNot() throws Exception {
        long pages = 32;
        UffdPager.Config fifo = new UffdPager.Config(UffdPager.Mode.MISSING, 2, 0, false, List.of(), UffdPager.Pinning.NONE,
                ThreadPriority.fifo(10), UffdPager.Waiting.AUTO);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, new StampSource(BASE, pages), Prefetch.NONE, 1, false, fifo)) {
            for (long p = 0; p < pages; p++) load(s.ram().segment(), BASE + p * PAGE);  // both handlers have served
            List<Integer> policies = handlerPolicies();
            assertEquals(2, policies.size(), "two handler threads");
            if (s.pager().schedulingRefused() == null) {
                assertEquals(List.of(1, 1), policies, "SCHED_FIFO (1) in /proc/self/task/*/stat");
            } else {
                assertTrue(s.pager().schedulingRefused().startsWith("SCHED_FIFO 10: "), s.pager().schedulingRefused());
                assertEquals(List.of(0, 0), policies, "refused: the handlers run normally");
            }
            s.session().close();
            assertStamped(s.ram().segment(), pages, 1);
        }
    }

    /** Scheduling policy (field 41 of /proc/self/task/TID/stat) of every live uffd handler thread. */
    private static List<Integer> handlerPolicies() throws java.io.IOException {
        List<Integer> out = new ArrayList<>();
        try (var tasks = Files.list(Path.of("/proc/self/task"))) {
            for (Path t : tasks.toList()) {
                String comm;
                String stat;
                try {
                    comm = Files.readString(t.resolve("comm")).strip();
                    stat = Files.readString(t.resolve("stat"));
                } catch (java.io.IOException gone) {
                    continue;   // a thread that ended while we listed
                }
                if (!comm.startsWith("uffd-handler-")) continue;
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).trim().split("\\s+");
                out.add(Integer.parseInt(f[41 - 3]));   // fields after "pid (comm)" start at field 3
            }
        }
        return out;
    }

    @ParameterizedTest
    @EnumSource(value = UffdPager.Waiting.class, names = {"READ", "POLL"})
    void shouldFetchFreshDataAfterTheKernelDropsServedPages(UffdPager.Waiting waiting) throws Exception {
        long pages = 64;
        StampSource source = new StampSource(BASE, pages);
        try (Setup s = start(pages, GuestRam.Backing.ANONYMOUS, source, Prefetch.NONE, 1, false, waitingIn(waiting, 1))) {
            MemorySegment ram = s.ram().segment();
            for (long p = 0; p < pages; p++) load(ram, BASE + p * PAGE);
            source.generation.set(2);
            s.ram().memory().discard(BASE + 16 * PAGE, 8 * PAGE); // MADV_DONTNEED: a REMOVE event, handled before madvise returns
            for (long p = 0; p < pages; p++) load(ram, BASE + p * PAGE);
            s.session().close();
            for (long p = 0; p < pages; p++) {
                int gen = p >= 16 && p < 24 ? 2 : 1;
                assertEquals(StampSource.word(BASE + p * PAGE, 64, gen), load(ram, BASE + p * PAGE + 64), "page " + p);
                assertEquals(gen, source.fills.get((int) p), "fills of page " + p);
            }
            PagingStats stats = new PagingStats(s.core());
            assertEquals(1, stats.removes(), "REMOVE events");
            assertEquals(pages + 8, stats.pagesInstalled());
        }
    }
}
