package dev.faultline.pageserver;

import static dev.faultline.pageserver.FirecrackerVmmSide.MIB;
import static dev.faultline.pageserver.FirecrackerVmmSide.PAGE;
import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.telemetry.EventLog;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * faultline's page server against a VMM played exactly as Firecracker plays it ({@link FirecrackerVmm}):
 * three guest regions mapped separately and listed out of order, one userfaultfd made as Firecracker
 * makes it, the JSON of each release's handshake; three threads touch every page of a 64 MiB memory
 * file in their own orders (from native code, as a vCPU's access waits in the kernel), a fourth reads
 * pages through the kernel (process_vm_readv: get_user_pages, the way KVM reaches guest memory), and a
 * balloon gives 4 MiB back while the others are still faulting. Every wait is bounded.
 */
class FirecrackerProtocolTest {
    static final long FILE_BYTES = 64 * MIB;
    static final long[] REGION_SIZES = {24 * MIB, 8 * MIB, 32 * MIB};
    static final int TOUCHERS = 3;
    static final long WAIT_MS = 120_000;

    static Stream<Arguments> versions() {
        return Stream.of(Arguments.of("v1.7", FirecrackerVersion.V1_7), Arguments.of("v1.10", FirecrackerVersion.V1_7),
                Arguments.of("v1.11", FirecrackerVersion.V1_11), Arguments.of("v1.12", FirecrackerVersion.V1_12),
                Arguments.of("main", FirecrackerVersion.V1_12), Arguments.of("secret-hiding without guest_memfd", FirecrackerVersion.SECRET_HIDING));
    }

    static PageServer server(Path dir, MemoryFile file, Set<Integer> uids, List<String> log) {
        return PageServer.start(new PageServer.Config(dir.resolve("h.sock"), uids, 8, file, file.size(), Prefetch.NONE, null, 0,
                PageServer.OnFailure.CLOSE, 5000, EventLog.NONE, null, log::add));
    }

    static Set<Integer> ownUid() throws Exception {
        return Set.of((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid"));
    }

    @ParameterizedTest(name = "Firecracker {0}")
    @MethodSource("versions")
    void shouldServeEveryPageOfTheFileAndZerosAfterABalloonRemoveWhileFaultsAreInFlight(String label, FirecrackerVersion version,
                                                                                        @TempDir Path dir) throws Exception {
        FirecrackerVmmSide.assumeUserfaultfd();
        Path memFile = dir.resolve("mem");
        FirecrackerVmmSide.writeMemoryFile(memFile, FILE_BYTES);
        List<String> log = new CopyOnWriteArrayList<>();
        List<HostMemory> regions = FirecrackerVmmSide.mapRegions(REGION_SIZES);
        try (MemoryFile file = MemoryFile.open(memFile, true); PageServer server = server(dir, file, ownUid(), log)) {
            List<GuestRegionMapping> maps = FirecrackerVmmSide.mappings(regions);
            List<GuestRegionMapping> sent = List.of(maps.get(2), maps.get(0), maps.get(1));   // no particular order
            HostMemory balloonRegion = regions.get(1);
            long balloonFrom = 2 * MIB, balloonLen = 4 * MIB;   // inside region 1: file offsets [26 MiB, 30 MiB)
            long balloonFileFrom = REGION_SIZES[0] + balloonFrom;
            long pages = FILE_BYTES / PAGE;
            AtomicLong touched = new AtomicLong(), kernelMismatches = new AtomicLong(), kernelReads = new AtomicLong();
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            CountDownLatch removed = new CountDownLatch(1);
            try (FirecrackerVmm vmm = FirecrackerVmm.handOff(server.socket(), sent, version, true)) {
                List<Thread> threads = new ArrayList<>();
                for (int t = 0; t < TOUCHERS; t++) {
                    int v = t;
                    threads.add(Thread.ofPlatform().name("toucher-" + t).start(() -> {
                        try {
                            for (long i = 0; i < pages; i++) {
                                long p = v == 0 ? i : v == 1 ? pages - 1 - i : (i * 7919) % pages;
                                long off = p * PAGE;
                                Libc.loadLongInNative(hostAddress(regions, off) + 8L * v);
                                touched.incrementAndGet();
                            }
                        } catch (Throwable e) {
                            errors.add(e);
                        }
                    }));
                }
                threads.add(Thread.ofPlatform().name("kernel-reader").start(() -> {
                    MemorySegment buf = HostMemory.scratch(PAGE);
                    try {
                        for (long p = 5; p < pages; p += 97) {
                            long off = p * PAGE;
                            boolean removable = off >= balloonFileFrom && off < balloonFileFrom + balloonLen;
                            FirecrackerVmmSide.kernelRead(hostAddress(regions, off), buf, PAGE);
                            kernelReads.incrementAndGet();
                            long w = buf.get(ValueLayout.JAVA_LONG, 8);
                            if (w != FirecrackerVmmSide.word(off + 8) && !(removable && w == 0)) kernelMismatches.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
                threads.add(Thread.ofPlatform().name("balloon").start(() -> {
                    try {
                        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                        while (touched.get() < pages / 4 && System.nanoTime() < until) Thread.sleep(1);
                        vmm.balloonRemove(balloonRegion.address() + balloonFrom, balloonLen);   // while the touchers still fault
                        removed.countDown();
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
                for (Thread t : threads) t.join(WAIT_MS);
                for (Thread t : threads) {
                    if (t.isAlive()) {
                        vmm.uffd().close();   // releases what waits in a fault, so the test ends
                        fail(label + ": " + t.getName() + " still waits after " + WAIT_MS + " ms (touched " + touched.get() + " of " + TOUCHERS * pages + ")");
                    }
                }
                if (!errors.isEmpty()) throw new AssertionError(errors.getFirst());
                assertEquals(0, removed.getCount(), "the balloon ran");
                assertTrue(touched.get() - TOUCHERS * pages / 4 > 0, "pages were still being touched after the remove began");

                // every page: the file's bytes, except the ballooned range, which reads as zeros
                MemorySegment buf = HostMemory.scratch(MIB);
                long mismatches = 0;
                for (long off = 0; off < FILE_BYTES; off += MIB) {
                    FirecrackerVmmSide.kernelRead(hostAddress(regions, off), buf, MIB);
                    boolean ballooned = off >= balloonFileFrom && off < balloonFileFrom + balloonLen;
                    for (long o = 0; o < MIB; o += 8) {
                        long want = ballooned ? 0 : FirecrackerVmmSide.word(off + o);
                        if (buf.get(ValueLayout.JAVA_LONG, o) != want) mismatches++;
                    }
                }
                assertEquals(0, mismatches, label + ": words differing from the file (or not zero after the remove)");
                assertEquals(0, kernelMismatches.get(), label + ": kernel-side reads that saw wrong bytes");
                assertTrue(kernelReads.get() > 100, "kernel-side reads happened");

                PageServer.VmView vm = server.liveVms().getFirst();
                assertEquals(version == FirecrackerVersion.V1_1 ? FirecrackerVersion.V1_1 : version == FirecrackerVersion.V1_11 ? FirecrackerVersion.V1_7
                        : version, vm.handshake().shape(), "the handshake's shape as the handler read it");
                PagingStats st = new PagingStats(vm.core());
                boolean removeEvents = version.balloon() == FirecrackerVersion.Balloon.MADVISE;
                assertEquals(removeEvents ? balloonLen / PAGE : 0, vm.removedPages(), label + ": pages the handler heard removed");
                assertTrue(st.pagesInstalled() >= pages - balloonLen / PAGE, "every page was installed: " + st.pagesInstalled());
                assertTrue(st.pagesInstalled() <= pages + (removeEvents ? balloonLen / PAGE : 0),
                        "no page was installed twice (except ballooned pages touched again): " + st.pagesInstalled());
            }
            if (version.keepsSocketOpen()) {   // v1.12+: the VMM's hang-up ends its connection
                long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (!server.liveVms().isEmpty() && System.nanoTime() < until) Thread.sleep(5);
                assertTrue(server.liveVms().isEmpty(), "the connection ended when the VMM closed its socket");
                assertEquals("peer closed the socket", server.endedVms().getFirst().endReason());
            }
        } finally {
            for (HostMemory m : regions) m.close();
        }
    }

    /** The VMM's address of file offset {@code off} (regions at consecutive offsets). */
    static long hostAddress(List<HostMemory> regions, long off) {
        for (HostMemory m : regions) {
            if (off < m.size()) return m.address() + off;
            off -= m.size();
        }
        throw new IllegalArgumentException("offset past the regions");
    }

    @Test
    void shouldCloseTheConnectionWhenARegionLiesPastTheEndOfTheMemoryFile(@TempDir Path dir) throws Exception {
        FirecrackerVmmSide.assumeUserfaultfd();
        Path memFile = dir.resolve("mem");
        FirecrackerVmmSide.writeMemoryFile(memFile, 4 * MIB);
        List<String> log = new CopyOnWriteArrayList<>();
        List<HostMemory> regions = FirecrackerVmmSide.mapRegions(4 * MIB, 4 * MIB);
        try (MemoryFile file = MemoryFile.open(memFile, false); PageServer server = server(dir, file, ownUid(), log);
             FirecrackerVmm vmm = FirecrackerVmm.handOff(server.socket(), FirecrackerVmmSide.mappings(regions), FirecrackerVersion.V1_12, false)) {
            assertTrue(vmm.handlerHungUp(10_000), "the VMM sees the handler close the connection");
            assertEquals(1, server.connectionsRefused());
            assertTrue(log.stream().anyMatch(l -> l.contains("past the end of memory file")), String.join("\n", log));
        } finally {
            for (HostMemory m : regions) m.close();
        }
    }

    @Test
    void shouldReportAFailureAndCloseTheConnectionWhenTheMemoryFileIsTruncatedUnderIt(@TempDir Path dir) throws Exception {
        FirecrackerVmmSide.assumeUserfaultfd();
        Path memFile = dir.resolve("mem");
        FirecrackerVmmSide.writeMemoryFile(memFile, 8 * MIB);
        List<String> log = new CopyOnWriteArrayList<>();
        List<HostMemory> regions = FirecrackerVmmSide.mapRegions(8 * MIB);
        try (MemoryFile file = MemoryFile.open(memFile, true); PageServer server = server(dir, file, ownUid(), log)) {
            FirecrackerVmm vmm = FirecrackerVmm.handOff(server.socket(), FirecrackerVmmSide.mappings(regions), FirecrackerVersion.V1_12, false);
            assertEquals(FirecrackerVmmSide.word(8), Libc.loadLongInNative(regions.getFirst().address() + 8), "served before the truncation");
            try (FileChannel ch = FileChannel.open(memFile, StandardOpenOption.WRITE)) {
                ch.truncate(4 * MIB);
            }
            Thread toucher = Thread.ofPlatform().start(() -> Libc.loadLongInNative(regions.getFirst().address() + 6 * MIB));
            assertTrue(vmm.handlerHungUp(10_000), "the VMM sees the handler close the connection");
            assertEquals(1, server.failures());
            assertTrue(log.stream().anyMatch(l -> l.contains("failed") && l.contains("UFFDIO_COPY")), String.join("\n", log));
            vmm.close();   // the VMM gives up its userfaultfd: the waiting access completes (with a zero page)
            toucher.join(10_000);
            assertFalse(toucher.isAlive(), "the access waiting on the failed handler was released");
        } finally {
            for (HostMemory m : regions) m.close();
        }
    }

    @Test
    void shouldRefuseAPeerWhoseUidIsNotAllowedBeforeReadingItsHandshake(@TempDir Path dir) throws Exception {
        FirecrackerVmmSide.assumeUserfaultfd();
        Path memFile = dir.resolve("mem");
        FirecrackerVmmSide.writeMemoryFile(memFile, MIB);
        List<String> log = new CopyOnWriteArrayList<>();
        List<HostMemory> regions = FirecrackerVmmSide.mapRegions(MIB);
        int other = ownUid().iterator().next() + 4242;
        try (MemoryFile file = MemoryFile.open(memFile, false); PageServer server = server(dir, file, Set.of(other), log)) {
            try (FirecrackerVmm vmm = FirecrackerVmm.handOff(server.socket(), FirecrackerVmmSide.mappings(regions), FirecrackerVersion.V1_12, false)) {
                assertTrue(vmm.handlerHungUp(10_000), "the VMM sees the handler close the connection");
            } catch (dev.faultline.sys.ErrnoException e) {   // or the handler closed it before the VMM's sendmsg
                assertTrue(e.errno() == dev.faultline.sys.Errno.EPIPE || e.errno() == dev.faultline.sys.Errno.ECONNRESET, e.getMessage());
            }
            long until = System.nanoTime() + 10_000_000_000L;
            while (log.isEmpty() && System.nanoTime() < until) Thread.sleep(2);
            assertTrue(log.stream().anyMatch(l -> l.contains("is not allowed (--allow-uid)")), String.join("\n", log));
            assertEquals(0, server.connectionsAccepted());
            int mode = (Integer) Files.getAttribute(server.socket(), "unix:mode");
            assertEquals(0600, mode & 0777, "the socket is mode 0600");
        } finally {
            for (HostMemory m : regions) m.close();
        }
    }
}
