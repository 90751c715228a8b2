package dev.faultline.vmm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.kvm.HostCapabilities;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A machine paused mid-run and resumed, or moved (RAM and vCPU state copied) into a fresh machine on
 * the same or the other backend, finishes with exactly the RAM of a run that was never interrupted.
 */
class PauseResumeTest {
    private static final long MEM = 16L << 20;
    private static final Duration PAUSE = Duration.ofSeconds(10);

    /**
     * Long enough that the guest is still running when paused 20-30 ms in. KVM on these machines runs
     * guest code far slower than the ref interpreter (docs/kvm-backend.md), so its runs are shorter.
     */
    private static Workload workload(int vcpus, String... backends) {
        List<String> b = List.of(backends);
        int rounds = !b.contains("kvm") ? 100_000 : b.get(0).equals("ref") ? 20_000 : 3000;
        return Workloads.build("hot", WorkloadParams.of(MEM, vcpus).withRounds(rounds).withWorkingSetPages(64));
    }

    private static void requireBackend(String name) {
        if (name.equals("kvm")) {
            HostCapabilities caps = HostCapabilities.probe();
            assumeTrue(caps.kvmAvailable(), () -> "skipped: /dev/kvm is not usable: " + caps.kvmReason());
        }
    }

    private static String uninterruptedHash(String backend, Workload w, int vcpus) {
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, MachineSpec.of(MEM, vcpus, w.image()))) {
            RunReport r = m.run();
            assertTrue(r.clean(), r.toString());
            return r.ramSha256();
        }
    }

    @ParameterizedTest(name = "{0} with {1} vCPU(s)")
    @CsvSource({"ref, 1", "ref, 2", "kvm, 1", "kvm, 2"})
    void shouldFinishWithTheSameRamAfterAPauseAndResume(String backend, int vcpus) throws Exception {
        requireBackend(backend);
        Workload w = workload(vcpus, backend);
        String expected = uninterruptedHash(backend, w, vcpus);
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, MachineSpec.of(MEM, vcpus, w.image()))) {
            Machine.Execution run = m.start();
            Thread.sleep(20);
            List<VcpuState> states = run.pause(PAUSE);
            assertEquals(vcpus, states.size());
            run.resume();
            RunReport r = run.await();
            assertTrue(r.clean(), r.vcpus().toString());
            assertEquals(expected, r.ramSha256());
            w.verify(m.ram().segment());
        }
    }

    @ParameterizedTest(name = "{0} to {1} with {2} vCPU(s)")
    @CsvSource({"ref, ref, 1", "kvm, kvm, 2", "kvm, ref, 1", "kvm, ref, 2", "ref, kvm, 2"})
    void shouldFinishAGuestMovedMidRunIntoAFreshMachineExactlyAsIfUninterrupted(String from, String to, int vcpus) throws Exception {
        requireBackend(from);
        requireBackend(to);
        Workload w = workload(vcpus, from, to);
        String expected = uninterruptedHash(from, w, vcpus);
        List<VcpuState> states;
        byte[] ram;
        try (Hypervisor hv = Backends.open(from); Machine m = new Machine(hv, MachineSpec.of(MEM, vcpus, w.image()))) {
            Machine.Execution run = m.start();
            Thread.sleep(from.equals("ref") ? 5 : 30);
            states = run.pause(PAUSE);
            ram = m.ram().segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
            run.stop("moved away");
            for (VcpuResult v : run.await().vcpus()) {
                assertEquals(VcpuOutcome.STOPPED, v.outcome(), "vCPU " + v.index() + " was still running when paused");
            }
        }
        assertNotEquals(w.image().entry(), states.get(0).regs().rip, "the guest was paused after it started");
        try (Hypervisor hv = Backends.open(to); Machine m = new Machine(hv, MachineSpec.resuming(MEM, states))) {
            m.ram().segment().copyFrom(java.lang.foreign.MemorySegment.ofArray(ram));
            RunReport r = m.run();
            assertTrue(r.clean(), r.vcpus().toString());
            assertEquals(expected, r.ramSha256());
            w.verify(m.ram().segment());
        }
    }
}
