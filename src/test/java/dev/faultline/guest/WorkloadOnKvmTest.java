package dev.faultline.guest;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.workload.RegionLayout;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every built-in workload, on one and on two vCPUs, run on bare KVM (the test runner, not
 * faultline's backend): the reports and the done code are what the Java model says, and so is
 * every stamped page. RAM is filled with noise first, so reads and checksums see real data.
 */
class WorkloadOnKvmTest {
    private static final long MEM = 8L << 20;

    @TempDir Path dir;

    @BeforeEach
    void requireKvm() {
        assumeTrue(KvmHarness.unavailableReason().isEmpty(), () -> "skipped: " + KvmHarness.unavailableReason().orElse(""));
    }

    static Stream<Arguments> workloads() {
        return Workloads.names().stream().flatMap(n -> Stream.of(Arguments.of(n, 1), Arguments.of(n, 2)));
    }

    @ParameterizedTest(name = "{0} on {1} vCPU(s)")
    @MethodSource("workloads")
    void shouldRunToCompletionWithReportsAndMemoryAsTheModelSays(String name, int vcpus) throws Exception {
        Workload w = Workloads.build(name, WorkloadParams.of(MEM, vcpus).withRounds(3).withSeed(42));
        Map<Integer, List<Long>> expected = new HashMap<>();
        KvmHarness.Run run = KvmHarness.run(w.image(), MEM, vcpus, dir, ram -> {
            fillWithNoise(ram, w.layout());
            for (int v = 0; v < vcpus; v++) expected.put(v, w.expectedReports(v, ram));
        });
        for (int v = 0; v < vcpus; v++) {
            List<KvmHarness.Exit> exits = run.exits().get(v);
            int[] reports = run.outs(v, BootProtocol.PORT_REPORT).stream().mapToInt(Long::intValue).toArray();
            assertArrayEquals(Workload.dwords(expected.get(v)), reports, "reports of vCPU " + v + ", exits " + exits);
            assertEquals(KvmHarness.Exit.out(BootProtocol.PORT_DONE, Workloads.DONE_OK), exits.getLast(), "last exit of vCPU " + v);
        }
        run.withRam(w::verify);
    }

    static void fillWithNoise(MemorySegment ram, RegionLayout layout) {
        SplittableRandom rnd = new SplittableRandom(7);
        for (long a = layout.regionStart(); a < layout.regionEnd(); a += 8) ram.set(ValueLayout.JAVA_LONG_UNALIGNED, a, rnd.nextLong());
    }
}
