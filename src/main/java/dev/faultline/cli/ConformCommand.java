package dev.faultline.cli;

import dev.faultline.conform.Conformance;
import dev.faultline.hv.Hypervisor;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.vmm.Backends;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "conform", header = "Differential conformance: random guest programs on two backends, compared.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Differential conformance: runs N random guest programs (arithmetic and flags at every size,",
                "loads and stores, loops, branches, calls, string stores, port I/O, MMIO above RAM) and every built-in",
                "workload on two backends, and compares the exits in order, the final registers and the RAM SHA-256.",
                "Programs never read a status flag the architecture leaves undefined (CPUs differ there), and",
                "the flags a program leaves undefined at its end are not compared (its listing names them).",
                "A mismatching program is shrunk to a smaller one that still disagrees. Needs /dev/kvm for the",
                "default comparison (kvm is the reference); without it nothing is compared and the exit code is 4.",
                "Exit code 0 when everything agrees, 1 on any mismatch."})
final class ConformCommand implements Callable<Integer> {
    @Option(names = "--programs", paramLabel = "N", defaultValue = "200", description = "Random programs to compare. Default: ${DEFAULT-VALUE}.")
    int programs;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "1", description = "Seed of the program generator. Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--steps", paramLabel = "N", defaultValue = "40", description = "Steps per program. Default: ${DEFAULT-VALUE}.")
    int steps;

    @Option(names = "--expected", paramLabel = "BACKEND", defaultValue = "kvm", description = "The reference backend. Default: ${DEFAULT-VALUE}.")
    String expected;

    @Option(names = "--actual", paramLabel = "BACKEND", defaultValue = "ref", description = "The backend under test. Default: ${DEFAULT-VALUE}.")
    String actual;

    @Option(names = "--no-workloads", description = "Skip the built-in workloads.")
    boolean noWorkloads;

    @Option(names = "--no-shrink", description = "Report mismatches without shrinking them.")
    boolean noShrink;

    @Option(names = "--show", paramLabel = "INDEX", description = "Print program INDEX of the seed and what each backend did with it, then stop.")
    Integer show;

    @Option(names = "--json", description = "Print one JSON object on stdout (progress still goes to stderr).")
    boolean json;

    @Override
    public Integer call() {
        if (programs < 0) throw new UserError("--programs must not be negative, got " + programs);
        if (steps < 1) throw new UserError("--steps must be at least 1, got " + steps);
        if ((expected.equals("kvm") || actual.equals("kvm")) && !HostCapabilities.probe().kvmAvailable()) {
            String why = HostCapabilities.probe().kvmReason();
            if (json) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("compared", false);
                m.put("reason", "/dev/kvm is not usable here (" + why + "): nothing was compared");
                Json.print(System.out, m);
            } else {
                System.out.println("conform: /dev/kvm is not usable here (" + why + "): nothing was compared, so nothing passed.");
            }
            return 4;
        }
        Conformance.Result r;
        try (Hypervisor e = Backends.open(expected); Hypervisor a = Backends.open(actual)) {
            Conformance c = new Conformance(e, a);
            if (show != null) {
                c.show(seed, show, steps).forEach(System.out::println);
                return 0;
            }
            r = c.run(seed, programs, steps, !noWorkloads, !noShrink, line -> System.err.println("conform: " + line));
        }
        if (json) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("compared", true);
            m.put("expected", expected);
            m.put("actual", actual);
            m.put("seed", seed);
            m.put("programs", r.programs());
            m.put("steps", steps);
            m.put("workloads", r.workloads());
            m.put("mismatches", r.mismatches().size());
            List<Object> list = new ArrayList<>();
            for (Conformance.Mismatch mm : r.mismatches()) {
                Map<String, Object> x = new LinkedHashMap<>();
                x.put("guest", mm.guest());
                x.put("difference", mm.difference());
                x.put("program", mm.listing());
                x.put("shrunk_program", mm.shrunk());
                x.put("shrunk_difference", mm.shrunkDifference());
                list.add(x);
            }
            m.put("details", list);
            m.put("seconds", r.nanos() / 1e9);
            Json.print(System.out, m);
        } else {
            System.out.printf("conform: %d programs (seed %d, %d steps) and %d workload runs on %s vs %s: %d mismatch(es), %.1f s%n",
                    r.programs(), seed, steps, r.workloads(), expected, actual, r.mismatches().size(), r.nanos() / 1e9);
            for (Conformance.Mismatch mm : r.mismatches()) {
                System.out.println("MISMATCH " + mm.guest() + ": " + mm.difference());
                System.out.println("  shrunk to " + mm.shrunk().size() + " lines: " + mm.shrunkDifference());
                mm.shrunk().forEach(l -> System.out.println("    " + l));
            }
        }
        return r.mismatches().isEmpty() ? 0 : 1;
    }
}
