package dev.faultline.conform;

import dev.faultline.hv.ExitRecord;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Regs;
import dev.faultline.guest.GuestImage;
import dev.faultline.ref.x86.FlagEffect;
import dev.faultline.vmm.ExitLog;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/** What one backend did with one guest: per vCPU the outcome, the exits in order and the final registers; the RAM hash. */
record Observation(String backend, List<String> outcomes, List<List<ExitRecord>> exits, List<Regs> regs, String ramSha256) {

    static final int EXIT_LOG_LIMIT = 100_000;

    static Observation run(Hypervisor hv, GuestImage image, long ram, int vcpus, Duration timeout, Consumer<MemorySegment> prepare) {
        MachineSpec spec = MachineSpec.of(ram, vcpus, image).withExitLogLimit(EXIT_LOG_LIMIT).withTimeout(timeout);
        try (Machine m = new Machine(hv, spec)) {
            if (prepare != null) prepare.accept(m.ram().segment());
            RunReport r = m.run();
            List<String> outcomes = new ArrayList<>();
            List<List<ExitRecord>> exits = new ArrayList<>();
            List<Regs> regs = new ArrayList<>();
            for (VcpuResult v : r.vcpus()) {
                outcomes.add(v.outcome().name().toLowerCase() + (v.detail().isEmpty() ? "" : " (" + v.detail() + ")"));
                List<ExitRecord> list = new ArrayList<>();
                for (ExitLog.Entry e : v.exits().entries()) list.add(e.exit());
                exits.add(list);
                regs.add(v.regs());
            }
            return new Observation(hv.name(), outcomes, exits, regs, r.ramSha256());
        }
    }

    /**
     * The first difference between two observations, or null when they agree. RFLAGS bits in
     * {@code undefinedFlags} are not compared: they hold whatever each CPU chooses (FlagFlow).
     */
    static String firstDifference(Observation a, Observation b, long undefinedFlags) {
        for (int v = 0; v < a.exits.size(); v++) {
            List<ExitRecord> ea = a.exits.get(v), eb = b.exits.get(v);
            int n = Math.min(ea.size(), eb.size());
            for (int i = 0; i < n; i++) {
                if (!ea.get(i).equals(eb.get(i))) {
                    return String.format("vCPU %d exit #%d: %s gave %s, %s gave %s", v, i, a.backend, ea.get(i), b.backend, eb.get(i));
                }
            }
            if (ea.size() != eb.size()) {
                return String.format("vCPU %d: %s made %d exits, %s made %d (next: %s)", v, a.backend, ea.size(), b.backend, eb.size(),
                        ea.size() > n ? a.backend + " " + ea.get(n) : b.backend + " " + eb.get(n));
            }
            if (!a.outcomes.get(v).equals(b.outcomes.get(v))) {
                return String.format("vCPU %d ended %s on %s but %s on %s", v, a.outcomes.get(v), a.backend, b.outcomes.get(v), b.backend);
            }
            for (String name : Regs.REPORT_ORDER) {
                long x = a.regs.get(v).byName(name), y = b.regs.get(v).byName(name);
                long ignored = name.equals("rflags") ? undefinedFlags : 0;
                if ((x & ~ignored) != (y & ~ignored)) {
                    return String.format("vCPU %d register %s: %s 0x%x, %s 0x%x%s", v, name, a.backend, x, b.backend, y,
                            ignored == 0 ? "" : " (" + FlagEffect.names(ignored) + " undefined, not compared)");
                }
            }
        }
        if (!a.ramSha256.equals(b.ramSha256)) {
            return "RAM differs: sha256 " + a.backend + " " + a.ramSha256 + ", " + b.backend + " " + b.ramSha256;
        }
        return null;
    }
}
