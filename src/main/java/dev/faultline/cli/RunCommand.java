package dev.faultline.cli;

import dev.faultline.hv.Hypervisor;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.fault.FaultPlan;
import dev.faultline.vmm.fault.FaultResolver;
import dev.faultline.vmm.ReportJson;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "run", header = "Runs a guest and reports every exit, each memory fault and how it was resolved.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Runs a guest: a built-in workload (--workload) or a flat image (--image), on one or more vCPUs,",
                "and reports each vCPU's exits in order, its final registers, the exit counts, the timings and",
                "a SHA-256 of guest RAM. Exit code 0 when every vCPU ended cleanly (done with code 0, or HLT),",
                "1 when the guest failed, 2 for a usage mistake."})
final class RunCommand implements Callable<Integer> {

    @ArgGroup(exclusive = true, multiplicity = "1")
    GuestOptions.Source source;

    @Mixin
    GuestOptions guest;

    @Mixin
    FaultOptions faults;

    @Option(names = "--json", description = "Print one JSON object (the report) on stdout.")
    boolean json;

    @Override
    public Integer call() {
        GuestOptions.Prepared prepared = guest.prepare(source);
        FaultPlan plan = faults.plan();
        try (Hypervisor hv = Backends.open(guest.backend)) {
            RunReport report;
            MachineSpec spec = prepared.spec(json ? null : System.out);
            if (plan.any()) {
                String why = FaultResolver.unsupportedReason(plan, hv);
                if (why != null) throw new UserError(why);
                FaultResolver resolver = new FaultResolver(plan, spec.vcpus());
                spec = spec.withVmType(resolver.vmType()).withMainSlot(spec.mainSlotFlags(), resolver).withMemoryPreparer(resolver);
            }
            try (Machine m = new Machine(hv, spec)) {
                prepared.beforeRun(m.ram().segment());
                report = m.run();
                prepared.verify(m, report);
            }
            if (json) {
                Map<String, Object> tree = ReportJson.of(report);
                prepared.describe(tree);
                Json.print(System.out, tree);
            } else {
                printText(report, prepared);
            }
            return report.clean() && prepared.verified() ? 0 : 1;
        }
    }

    private static void printText(RunReport r, GuestOptions.Prepared p) {
        System.out.println();
        System.out.printf("%s: %s on %s, %s RAM, %d vCPU(s): %s%n", r.clean() && p.verified() ? "ok" : "FAILED",
                p.name(), r.backend(), Units.formatSize(r.ramSize()), r.vcpus().size(), p.verdict());
        for (VcpuResult v : r.vcpus()) {
            System.out.printf("  vcpu %d: %s (%s), rax=0x%x rip=0x%x, %d exits %s, %.1f ms%n", v.index(),
                    v.outcome().name().toLowerCase(), v.detail(), v.regs().rax(), v.regs().rip, v.exitCounts().values()
                            .stream().mapToLong(Long::longValue).sum(), v.exitCounts(), v.runNanos() / 1e6);
            for (var e : v.exits().entries()) {
                if (!e.exit().reason().equals("memory_fault") && !e.exit().reason().equals("hypercall")) continue;
                System.out.printf("    %s -> %s%n", e.exit(), e.resolution());
            }
        }
        System.out.printf("  RAM sha256 %s%n  setup %.1f ms, run %.1f ms%n", r.ramSha256(), r.setupNanos() / 1e6, r.runNanos() / 1e6);
    }
}
