package dev.faultline.cli;

import dev.faultline.guest.GuestImage;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadMismatchException;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Option;

/** The options every command that runs a guest shares: backend, RAM, vCPUs, and what to run. */
final class GuestOptions {

    /** Exactly one of: a built-in workload, or an image file. */
    static final class Source {
        @Option(names = "--workload", paramLabel = "NAME",
                description = "A built-in workload: ${COMPLETION-CANDIDATES}.", completionCandidates = WorkloadNames.class)
        String workload;

        @ArgGroup(exclusive = false)
        ImageFile image;
    }

    static final class ImageFile {
        @Option(names = "--image", required = true, paramLabel = "FILE", description = "A flat guest image (see docs/boot-protocol.md).")
        Path file;

        @Option(names = "--load-gpa", paramLabel = "ADDR", converter = Units.AddressConverter.class,
                description = "Guest-physical load address, at least 1 MiB (default 0x200000).")
        Long loadGpa;

        @Option(names = "--entry", paramLabel = "ADDR", converter = Units.AddressConverter.class,
                description = "Entry RIP, inside the image (default: the load address).")
        Long entry;
    }

    static final class WorkloadNames extends ArrayList<String> {
        private static final long serialVersionUID = 1L;
        WorkloadNames() { super(Workloads.names()); }
    }

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "kvm, ref, or auto (kvm where /dev/kvm works, else ref). Default: ${DEFAULT-VALUE}.")
    String backend;

    @Option(names = "--mem", paramLabel = "SIZE", converter = Units.SizeConverter.class, defaultValue = "64M",
            description = "Guest RAM (K/M/G suffixes). Default: ${DEFAULT-VALUE}.")
    long mem;

    @Option(names = "--vcpus", paramLabel = "N", defaultValue = "1", description = "Number of vCPUs. Default: ${DEFAULT-VALUE}.")
    int vcpus;

    @Option(names = "--memory-backing", paramLabel = "KIND", defaultValue = "anonymous",
            description = "Host memory behind guest RAM: anonymous or memfd. Default: ${DEFAULT-VALUE}.")
    String backing;

    @Option(names = "--seed", paramLabel = "N", defaultValue = "1", description = "Seed of the random workloads. Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--stride", paramLabel = "PAGES", defaultValue = "8", description = "Page stride of the stride workload. Default: ${DEFAULT-VALUE}.")
    int stride;

    @Option(names = "--rounds", paramLabel = "N", defaultValue = "4", description = "Rounds of the hot and phases workloads. Default: ${DEFAULT-VALUE}.")
    int rounds;

    @Option(names = "--working-set", paramLabel = "PAGES", defaultValue = "0",
            description = "Working-set pages of the hot and phases workloads (0: the workload's default).")
    int workingSet;

    @Option(names = "--timeout", paramLabel = "SECONDS", defaultValue = "300",
            description = "Stop the guest after this many seconds. Default: ${DEFAULT-VALUE}.")
    long timeoutSeconds;

    @Option(names = "--max-exit-log", paramLabel = "N", defaultValue = "10000",
            description = "Exits kept per vCPU for the report (the rest are only counted). Default: ${DEFAULT-VALUE}.")
    int maxExitLog;

    /** A guest ready to run: its machine spec and how to check its result. */
    interface Prepared {
        String name();
        MachineSpec spec(PrintStream consoleEcho);
        /** Called with RAM after the image is written, before any vCPU runs. */
        void beforeRun(MemorySegment ram);
        /** Checks the guest's result against what it should be; records the verdict. */
        void verify(Machine machine, RunReport report);
        boolean verified();
        String verdict();
        void describe(Map<String, Object> json);
    }

    Prepared prepare(Source source) {
        if (vcpus < 1) throw new UserError("--vcpus must be at least 1, got " + vcpus);
        if (timeoutSeconds < 1) throw new UserError("--timeout must be at least 1 second, got " + timeoutSeconds);
        if (maxExitLog < 0) throw new UserError("--max-exit-log must not be negative");
        GuestRam.Backing b = switch (backing) {
            case "anonymous" -> GuestRam.Backing.ANONYMOUS;
            case "memfd" -> GuestRam.Backing.MEMFD;
            default -> throw new UserError("--memory-backing must be anonymous or memfd, got '" + backing + "'");
        };
        if (source.workload != null) return workload(source.workload, b);
        return image(source.image, b);
    }

    private MachineSpec spec(GuestImage image, GuestRam.Backing b, PrintStream echo) {
        return MachineSpec.of(mem, vcpus, image).withBacking(b).withExitLogLimit(maxExitLog)
                .withTimeout(Duration.ofSeconds(timeoutSeconds)).withConsoleEcho(echo);
    }

    /** The workload parameters these options give (--mem, --vcpus, --seed, --stride, --rounds, --working-set). */
    WorkloadParams workloadParams() {
        WorkloadParams params = WorkloadParams.of(mem, vcpus).withSeed(seed).withStride(stride).withRounds(rounds);
        return workingSet > 0 ? params.withWorkingSetPages(workingSet) : params;
    }

    private Prepared workload(String name, GuestRam.Backing b) {
        Workload w = Workloads.build(name, workloadParams());
        GuestImage image = w.image();
        image.checkFits(mem);
        return new Prepared() {
            final List<List<Long>> expected = new ArrayList<>();
            String verdict = "not run";
            boolean ok;

            public String name() { return "workload " + name; }
            public MachineSpec spec(PrintStream echo) { return GuestOptions.this.spec(image, b, echo); }
            public void beforeRun(MemorySegment ram) {
                for (int v = 0; v < vcpus; v++) expected.add(w.expectedReports(v, ram));
            }
            public void verify(Machine machine, RunReport report) {
                List<String> problems = new ArrayList<>();
                for (VcpuResult v : report.vcpus()) {
                    int[] want = Workload.dwords(expected.get(v.index()));
                    long[] got = v.reports();
                    int[] gotInts = new int[got.length];
                    for (int i = 0; i < got.length; i++) gotInts[i] = (int) got[i];
                    if (!Arrays.equals(want, gotInts)) {
                        problems.add("vCPU " + v.index() + " reported " + got.length + " values, not the " + want.length + " expected");
                    }
                }
                try {
                    w.verify(machine.ram().segment());
                } catch (WorkloadMismatchException e) {
                    problems.add(e.getMessage());
                }
                ok = problems.isEmpty() && report.clean();
                verdict = !report.clean() ? "the guest did not finish cleanly"
                        : problems.isEmpty() ? "memory and reports verified" : String.join("; ", problems);
            }
            public boolean verified() { return ok; }
            public String verdict() { return verdict; }
            public void describe(Map<String, Object> json) {
                Map<String, Object> g = new LinkedHashMap<>();
                g.put("workload", name);
                g.put("description", w.description());
                g.put("verified", ok);
                g.put("verdict", verdict);
                json.put("guest", g);
            }
        };
    }

    private Prepared image(ImageFile f, GuestRam.Backing b) {
        long load = f.loadGpa == null ? dev.faultline.guest.BootProtocol.DEFAULT_LOAD_GPA : f.loadGpa;
        long entry = f.entry == null ? load : f.entry;
        GuestImage image = GuestImage.fromFile(f.file, load, entry);
        image.checkFits(mem);
        return new Prepared() {
            boolean ran;
            public String name() { return "image " + f.file; }
            public MachineSpec spec(PrintStream echo) { return GuestOptions.this.spec(image, b, echo); }
            public void beforeRun(MemorySegment ram) { }
            public void verify(Machine machine, RunReport report) { ran = true; }
            public boolean verified() { return ran; }
            public String verdict() { return "rax of vCPU 0 is the guest's result"; }
            public void describe(Map<String, Object> json) {
                Map<String, Object> g = new LinkedHashMap<>();
                g.put("image", f.file.toString());
                g.put("load_gpa", Json.hex(image.loadGpa()));
                g.put("entry", Json.hex(image.entry()));
                g.put("bytes", image.size());
                json.put("guest", g);
            }
        };
    }
}
