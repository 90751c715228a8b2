package dev.faultline.conform;

import dev.faultline.guest.GuestImage;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.ref.x86.FlagEffect;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Differential conformance: runs the same guests on two backends (normally kvm as the reference and
 * ref as the one under test) and compares exits in order, final registers and the RAM hash. A
 * mismatching random program is shrunk to a smaller program that still mismatches. Status flags the
 * architecture leaves undefined at a program's end are not compared (generated programs never read
 * one before that: {@link FlagFlow}).
 */
public final class Conformance {
    /** RAM for generated programs: the image at 2 MiB, the data area at 3 MiB. */
    static final long PROGRAM_RAM = 4L << 20;
    static final Duration TIMEOUT = Duration.ofSeconds(30);
    /** Generated programs run for microseconds; one that takes longer went astray (only possible in a shrunk candidate). */
    static final Duration PROGRAM_TIMEOUT = Duration.ofSeconds(3);

    public record Mismatch(String guest, String difference, List<String> listing, List<String> shrunk, String shrunkDifference) {}

    public record Result(int programs, int workloads, List<Mismatch> mismatches, long nanos) {}

    private final Hypervisor expected;
    private final Hypervisor actual;

    public Conformance(Hypervisor expected, Hypervisor actual) {
        this.expected = expected;
        this.actual = actual;
    }

    /** Compares {@code count} random programs of {@code steps} steps from {@code seed}, then every workload; progress after each guest. */
    public Result run(long seed, int count, int steps, boolean workloads, boolean shrink, Consumer<String> progress) {
        long t0 = System.nanoTime();
        List<Mismatch> mismatches = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            Program p = new ProgramGenerator(seed, i).generate(steps);
            String diff = compare(p);
            String summary = lastSummary();
            if (diff != null) {
                Program small = shrink ? shrink(p) : p;
                mismatches.add(new Mismatch("program " + i + " of seed " + seed, diff, p.listing(),
                        small.listing(), small == p ? diff : compare(small)));
            }
            if (progress != null) progress.accept("program " + (i + 1) + "/" + count + " (" + summary + ")" + (diff == null ? " agrees" : " MISMATCH: " + diff));
        }
        int w = 0;
        if (workloads) {
            for (String name : Workloads.names()) {
                for (int vcpus : new int[] {1, 2}) {
                    Workload wl = Workloads.build(name, WorkloadParams.of(8L << 20, vcpus).withRounds(2).withSeed(seed));
                    String diff = compare(wl.image(), 8L << 20, vcpus);
                    w++;
                    if (diff != null) mismatches.add(new Mismatch("workload " + name + " on " + vcpus + " vCPU(s)", diff, List.of(), List.of(), diff));
                    if (progress != null) progress.accept("workload " + name + " x" + vcpus + (diff == null ? " agrees" : " MISMATCH: " + diff));
                }
            }
        }
        return new Result(count, w, mismatches, System.nanoTime() - t0);
    }

    /** The first difference for a generated program, or null; flags undefined at its end are not compared. */
    String compare(Program p) {
        return compare(p.image(), PROGRAM_RAM, 1, PROGRAM_TIMEOUT, FlagEffect.STATUS & ~p.definedFlagsAtEnd());
    }

    /** The first difference for a guest, or null; every register bit is compared. */
    public String compare(GuestImage image, long ram, int vcpus) {
        return compare(image, ram, vcpus, TIMEOUT, 0);
    }

    private String compare(GuestImage image, long ram, int vcpus, Duration timeout, long undefinedFlags) {
        Observation a = Observation.run(expected, image, ram, vcpus, timeout, null);
        Observation b = Observation.run(actual, image, ram, vcpus, timeout, null);
        lastExpected = a;
        return Observation.firstDifference(a, b, undefinedFlags);
    }

    private Observation lastExpected;

    /** "done, 7 exits" for the last guest compared, as the reference backend saw it. */
    private String lastSummary() {
        Observation o = lastExpected;
        int exits = o.exits().stream().mapToInt(java.util.List::size).sum();
        return String.join("/", o.outcomes().stream().map(s -> s.replaceAll(" \\(.*", "")).toList()) + ", " + exits + " exits";
    }

    /** Program {@code index} of {@code seed}: its listing, then what each backend did with it. */
    public List<String> show(long seed, int index, int steps) {
        Program p = new ProgramGenerator(seed, index).generate(steps);
        List<String> out = new ArrayList<>(p.listing());
        String diff = compare(p);
        Observation a = lastExpected;
        Observation b = Observation.run(actual, p.image(), PROGRAM_RAM, 1, PROGRAM_TIMEOUT, null);
        for (Observation o : List.of(a, b)) {
            out.add(o.backend() + ": " + o.outcomes() + ", exits " + o.exits() + ", " + o.regs());
        }
        out.add(diff == null ? "the backends agree" : "first difference: " + diff);
        return out;
    }

    /**
     * Delta debugging over the program's steps: removes chunks while the programs still disagree. A
     * subset whose steps read a flag a removed step used to define is not a candidate: it could disagree
     * on an undefined flag alone.
     */
    Program shrink(Program p) {
        List<dev.faultline.conform.Op> ops = new ArrayList<>(p.ops());
        int chunk = Math.max(1, ops.size() / 2);
        int budget = 400;
        while (chunk >= 1 && budget > 0) {
            boolean removed = false;
            for (int start = 0; start < ops.size() && budget > 0; ) {
                List<dev.faultline.conform.Op> candidate = new ArrayList<>(ops.subList(0, start));
                candidate.addAll(ops.subList(Math.min(ops.size(), start + chunk), ops.size()));
                budget--;
                Program smaller = p.withOps(candidate);
                // Keep a candidate only if it still disagrees and the reference still finishes on its own terms.
                if (readsNoUndefinedFlag(smaller) && compare(smaller) != null && lastExpected.outcomes().stream().allMatch(o -> o.startsWith("done"))) {
                    ops = candidate;
                    removed = true;
                } else {
                    start += chunk;
                }
            }
            if (!removed) chunk /= 2;
        }
        return p.withOps(ops);
    }

    private static boolean readsNoUndefinedFlag(Program p) {
        try {
            p.definedFlagsAtEnd();
            return true;
        } catch (FlagFlow.UndefinedFlagRead e) {
            return false;
        }
    }
}
