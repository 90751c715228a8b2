package dev.faultline.cli;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.hv.Hypervisor;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.ref.RefBench;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "interp", header = "Guest instructions per second of the ref interpreter, and the same loop on kvm.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Guest instructions per second of the ref interpreter on a loop without faults or exits",
                "(add, xor, dec, jnz: 4 instructions per iteration), after a warm-up run, and the same program's",
                "time on KVM beside it. KVM's count is the program's known instruction count (4 per iteration + 3).",
                "KVM on machines without hardware virtualisation can be very slow, so it runs fewer iterations",
                "by default; the JSON says how many each ran."})
final class BenchInterpCommand implements Callable<Integer> {
    @Option(names = "--iterations", paramLabel = "N", defaultValue = "100000000",
            description = "Loop iterations on ref. Default: ${DEFAULT-VALUE}.")
    long iterations;

    @Option(names = "--kvm-iterations", paramLabel = "N", defaultValue = "2000000",
            description = "Loop iterations on kvm (0 to skip kvm). Default: ${DEFAULT-VALUE}.")
    long kvmIterations;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    @Override
    public Integer call() {
        if (iterations < 1) throw new UserError("--iterations must be at least 1, got " + iterations);
        if (kvmIterations < 0) throw new UserError("--kvm-iterations must not be negative, got " + kvmIterations);
        if (!json) System.err.println("bench interp: ref, " + iterations + " iterations (after a warm-up run)...");
        RefBench.Result ref = RefBench.run(iterations);
        Map<String, Object> out = new LinkedHashMap<>();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("iterations", iterations);
        r.put("instructions", ref.instructions());
        r.put("seconds", ref.nanos() / 1e9);
        r.put("instructions_per_second", Math.round(ref.instructionsPerSecond()));
        out.put("ref", r);
        double kvmRate = 0;
        if (kvmIterations > 0) {
            HostCapabilities caps = HostCapabilities.probe();
            if (!caps.kvmAvailable()) {
                out.put("kvm", Map.of("skipped", "/dev/kvm is not usable: " + caps.kvmReason()));
            } else {
                if (!json) System.err.println("bench interp: kvm, " + kvmIterations + " iterations...");
                long instructions = RefBench.INSTRUCTIONS_PER_ITERATION * kvmIterations + 3;
                GuestImage image = GuestImage.of(RefBench.loopImage(kvmIterations), BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
                RunReport rep;
                try (Hypervisor hv = Backends.open("kvm"); Machine m = new Machine(hv, MachineSpec.of(4L << 20, 1, image).withExitLogLimit(0))) {
                    rep = m.run();
                }
                if (rep.vcpus().get(0).outcome() != dev.faultline.vmm.VcpuOutcome.DONE) throw new IllegalStateException("the benchmark guest did not finish on kvm: " + rep.vcpus().get(0).detail());
                Map<String, Object> k = new LinkedHashMap<>();
                k.put("iterations", kvmIterations);
                k.put("instructions", instructions);
                k.put("seconds", rep.runNanos() / 1e9);
                kvmRate = instructions * 1e9 / rep.runNanos();
                k.put("instructions_per_second", Math.round(kvmRate));
                k.put("includes", "vCPU thread start to the done exit");
                out.put("kvm", k);
                out.put("ref_to_kvm_speed_ratio", Math.round(ref.instructionsPerSecond() / kvmRate * 100) / 100.0);
            }
        }
        out.put("target_ref_instructions_per_second", 100_000_000L);
        out.put("target_met", ref.instructionsPerSecond() >= 100e6);
        if (json) {
            Json.print(System.out, out);
        } else {
            System.out.printf("ref: %.1f M guest instructions/s (%d instructions in %.2f s)%n", ref.instructionsPerSecond() / 1e6,
                    ref.instructions(), ref.nanos() / 1e9);
            if (kvmRate > 0) System.out.printf("kvm: %.1f M guest instructions/s on the same loop (%d iterations); ref is %.1fx kvm here%n",
                    kvmRate / 1e6, kvmIterations, ref.instructionsPerSecond() / kvmRate);
            System.out.println("target (100 M/s on ref): " + (ref.instructionsPerSecond() >= 100e6 ? "met" : "NOT met"));
        }
        return 0;
    }
}
