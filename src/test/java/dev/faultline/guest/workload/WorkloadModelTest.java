package dev.faultline.guest.workload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;

/** The Java side of the workloads: layout, parameters, models, verification. No guest runs here. */
class WorkloadModelTest {
    private static final long MIB = 1L << 20;

    @Test
    void shouldSplitTheRegionAboveTheImageEvenlyAmongVcpus() {
        RegionLayout l = RegionLayout.of(128 * MIB + 4 * MIB, 2);
        assertEquals(0x400000, l.regionStart());
        assertEquals(16384, l.pagesPerVcpu());
        assertEquals(0x400000 + 64 * MIB, l.sliceStart(1));
        assertEquals(l.regionEnd(), l.sliceEnd(1));
    }

    @Test
    void shouldLeaveLeftoverPagesToNobody() {
        RegionLayout l = RegionLayout.of(4 * MIB + 3 * 4096, 2);
        assertEquals(1, l.pagesPerVcpu());
        assertEquals(4 * MIB + 2 * 4096, l.sliceEnd(1));
    }

    @Test
    void shouldRefuseARegionTooSmallForTheVcpuCount() {
        var e = assertThrows(WorkloadException.class, () -> Workloads.build("seq-write", WorkloadParams.of(4 * MIB + 8192, 3)));
        assertEquals("guest RAM of 4202496 bytes leaves 2 pages above 0x400000 for the workload region, fewer than one per vCPU"
                + " for 3 vCPUs; give the guest at least 4206592 bytes", e.getMessage());
        assertTrue(assertThrows(WorkloadException.class, () -> Workloads.build("seq-write", WorkloadParams.of(2 * MIB, 1)))
                .getMessage().contains("leaves 0 pages"));
    }

    @Test
    void shouldRefuseBadParametersWithOneLine() {
        assertEquals("unknown workload 'sequential'; choose one of seq-write, seq-read, random, stride, hot, checksum, phases",
                assertThrows(WorkloadException.class, () -> Workloads.build("sequential", WorkloadParams.of(8 * MIB, 1))).getMessage());
        assertEquals("vCPU count 17 is outside 1..16 (the boot protocol has 16 stacks)",
                assertThrows(WorkloadException.class, () -> Workloads.build("hot", WorkloadParams.of(8 * MIB, 17))).getMessage());
        assertEquals("stride: stride 0 must be at least 1 page",
                assertThrows(WorkloadException.class, () -> Workloads.build("stride", WorkloadParams.of(8 * MIB, 1).withStride(0))).getMessage());
        assertEquals("hot: working set of 2000 pages does not fit a slice of 1024 pages (1 vCPUs in 8 MiB)",
                assertThrows(WorkloadException.class,
                        () -> Workloads.build("hot", WorkloadParams.of(8 * MIB, 1).withWorkingSetPages(2000))).getMessage());
        assertEquals("phases: rounds 0 must be at least 1",
                assertThrows(WorkloadException.class, () -> Workloads.build("phases", WorkloadParams.of(8 * MIB, 1).withRounds(0))).getMessage());
        assertTrue(assertThrows(WorkloadException.class, () -> Workloads.build("seq-read", WorkloadParams.of(8 * MIB + 1, 1)))
                .getMessage().contains("not a whole number of 4 KiB pages"));
    }

    @Test
    void shouldVisitEveryPageOnceInARandomOrderThatDependsOnSeedAndVcpu() {
        RandomTouch w = (RandomTouch) Workloads.build("random", WorkloadParams.of(4 * MIB + 2 * 1000 * 4096, 2).withSeed(9));
        long[] o0 = w.pageOrder(0), o1 = w.pageOrder(1);
        assertArrayEquals(LongStream.range(0, 1000).toArray(), Arrays.stream(o0).sorted().toArray());
        assertArrayEquals(LongStream.range(0, 1000).toArray(), Arrays.stream(o1).sorted().toArray());
        assertFalse(Arrays.equals(o0, o1), "each vCPU has its own order");
        assertFalse(Arrays.equals(o0, LongStream.range(0, 1000).toArray()), "the order is not sequential");
        RandomTouch again = (RandomTouch) Workloads.build("random", WorkloadParams.of(4 * MIB + 2 * 1000 * 4096, 2).withSeed(9));
        assertArrayEquals(o0, again.pageOrder(0), "same seed, same order");
        RandomTouch other = (RandomTouch) Workloads.build("random", WorkloadParams.of(4 * MIB + 2 * 1000 * 4096, 2).withSeed(10));
        assertFalse(Arrays.equals(o0, other.pageOrder(0)), "another seed, another order");
        assertArrayEquals(w.image().bytes(), again.image().bytes(), "images are deterministic");
    }

    @Test
    void shouldHandleASliceOfOnePageInRandomOrder() {
        RandomTouch w = (RandomTouch) Workloads.build("random", WorkloadParams.of(4 * MIB + 4096, 1));
        assertArrayEquals(new long[] {0}, w.pageOrder(0));
    }

    @Test
    void shouldStampPagesWithGpaVcpuAndRound() {
        long word = PageStamp.of(0x401000, 1, 5);
        assertEquals(0xFA02005000401000L, word);
        assertEquals("vCPU 1 round 5 gpa 0x401000", PageStamp.describe(word));
        assertEquals("no stamp", PageStamp.describe(0));
    }

    @Test
    void shouldComputeTheWordWiseFnv1aChecksum() {
        // h = (basis ^ 1) * prime, then (h ^ 2) * prime, all mod 2^64
        long h = (WordChecksum.OFFSET_BASIS ^ 1) * WordChecksum.PRIME;
        h = (h ^ 2) * WordChecksum.PRIME;
        assertEquals(h, WordChecksum.of(new long[] {1, 2}));
        assertEquals(0xcbf29ce484222325L, WordChecksum.of(new long[0]));
    }

    @Test
    void shouldAcceptMemoryLaidOutAsTheModelSaysAndNameTheFirstBadPage() {
        long mem = 8 * MIB;
        for (String name : List.of("seq-write", "stride", "random", "hot", "phases")) {
            Workload w = Workloads.build(name, WorkloadParams.of(mem, 2).withRounds(2));
            BaseWorkload b = (BaseWorkload) w;
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment ram = arena.allocate(mem, 4096);
                long stamped = 0;
                for (int v = 0; v < 2; v++) {
                    for (long p = 0; p < w.layout().pagesPerVcpu(); p++) {
                        long want = b.expectedWord(v, p);
                        if (want != BaseWorkload.UNTOUCHED) {
                            ram.set(ValueLayout.JAVA_LONG, w.layout().sliceStart(v) + p * 4096, want);
                            stamped++;
                        }
                    }
                }
                assertTrue(stamped > 0, name);
                w.verify(ram);
                long bad = w.layout().sliceStart(1);
                long good = ram.get(ValueLayout.JAVA_LONG, bad);
                ram.set(ValueLayout.JAVA_LONG, bad, good ^ (1L << 48 | 1L << 49));
                var e = assertThrows(WorkloadMismatchException.class, () -> w.verify(ram), name);
                assertEquals(bad, e.firstGpa());
                assertEquals(1, e.mismatches());
                assertTrue(e.getMessage().startsWith(name + ": 1 of " + stamped + " stamped pages differ; first at gpa 0x"
                        + Long.toHexString(bad) + ": expected 0x" + Long.toHexString(good)), e.getMessage());
            }
        }
    }

    @Test
    void shouldMovePhasesFromTheStartToTheEndOfTheSlice() {
        // slice of 1024 pages, window 256, 4 phases: windows at 0, 256, 512, 768; 3 rounds each
        WorkingSet w = (WorkingSet) Workloads.build("phases", WorkloadParams.of(8 * MIB, 1).withPhases(4).withRounds(3));
        long base = w.layout().sliceStart(0);
        assertEquals(PageStamp.of(base, 0, 2), w.expectedWord(0, 0));
        assertEquals(PageStamp.of(base + 300 * 4096L, 0, 5), w.expectedWord(0, 300));
        assertEquals(PageStamp.of(base + 1023 * 4096L, 0, 11), w.expectedWord(0, 1023));
        assertEquals(List.of(0L, 1L, 2L, 3L), w.expectedReports(0, MemorySegment.NULL));
        assertEquals(4 * 3 * 256, w.touchesPerVcpu());
    }

    @Test
    void shouldSplitReportedValuesIntoLowThenHighDwords() {
        assertArrayEquals(new int[] {0x89abcdef, 0x01234567, 5, 0}, Workload.dwords(List.of(0x0123456789abcdefL, 5L)));
    }
}
