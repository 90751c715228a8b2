package dev.faultline.cli;

import dev.faultline.hv.Hypervisor;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.ReportJson;
import dev.faultline.vmm.RunReport;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "demo", mixinStandardHelpOptions = true,
        description = {"The main job, end to end on the best backend this machine has (kvm where /dev/kvm works,",
                "the reference hypervisor elsewhere): a guest with a working set that moves through its memory",
                "runs on several vCPUs; its memory and reports are verified and a summary is printed."})
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print one JSON object (the report) on stdout.")
    boolean json;

    @Option(names = "--mem", paramLabel = "SIZE", converter = Units.SizeConverter.class, defaultValue = "256M",
            description = "Guest RAM. Default: ${DEFAULT-VALUE}.")
    long mem;

    @Option(names = "--vcpus", paramLabel = "N", defaultValue = "2", description = "vCPUs. Default: ${DEFAULT-VALUE}.")
    int vcpus;

    @Override
    public Integer call() {
        Backends.Choice choice = Backends.best();
        if (!json) System.out.println("faultline demo: backend " + choice.name() + ": " + choice.why());
        GuestOptions opts = new GuestOptions();
        opts.backend = choice.name();
        opts.mem = mem;
        opts.vcpus = vcpus;
        opts.backing = "anonymous";
        opts.seed = 1;
        opts.stride = 8;
        opts.rounds = 16;
        opts.timeoutSeconds = 600;
        opts.maxExitLog = 100;
        GuestOptions.Source src = new GuestOptions.Source();
        src.workload = "phases";
        GuestOptions.Prepared prepared = opts.prepare(src);
        RunReport report;
        try (Hypervisor hv = Backends.open(choice.name()); Machine m = new Machine(hv, prepared.spec(null))) {
            if (!json) System.out.printf("running %s: %d vCPU(s), %s of RAM...%n", prepared.name(), vcpus, Units.formatSize(mem));
            prepared.beforeRun(m.ram().segment());
            report = m.run();
            prepared.verify(m, report);
        }
        boolean ok = report.clean() && prepared.verified();
        if (json) {
            Map<String, Object> tree = new LinkedHashMap<>();
            tree.put("backend_choice", Map.of("backend", choice.name(), "why", choice.why()));
            tree.putAll(ReportJson.of(report));
            prepared.describe(tree);
            Json.print(System.out, tree);
        } else {
            System.out.printf("%s: %s%n", ok ? "ok" : "FAILED", prepared.verdict());
            System.out.printf("  exits %s, run %.1f ms, RAM sha256 %s%n", report.exitCounts(), report.runNanos() / 1e6, report.ramSha256());
        }
        return ok ? 0 : 1;
    }
}
