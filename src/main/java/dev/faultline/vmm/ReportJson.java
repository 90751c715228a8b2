package dev.faultline.vmm;

import dev.faultline.hv.Regs;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The JSON shape of a {@link RunReport} (the same for every backend; docs/cli.md describes it). */
public final class ReportJson {
    private ReportJson() {}

    public static Map<String, Object> of(RunReport r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("backend", r.backend());
        m.put("ram_bytes", r.ramSize());
        m.put("clean", r.clean());
        m.put("ram_sha256", r.ramSha256());
        m.put("exit_counts", r.exitCounts());
        Map<String, Object> t = new LinkedHashMap<>();
        t.put("setup_ms", r.setupNanos() / 1e6);
        t.put("run_ms", r.runNanos() / 1e6);
        m.put("timings", t);
        List<Object> vcpus = new ArrayList<>();
        for (VcpuResult v : r.vcpus()) vcpus.add(vcpu(v));
        m.put("vcpus", vcpus);
        return m;
    }

    public static Map<String, Object> vcpu(VcpuResult v) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("index", v.index());
        m.put("outcome", v.outcome().name().toLowerCase());
        if (v.outcome() == VcpuOutcome.DONE) m.put("done_code", v.doneCode());
        m.put("detail", v.detail());
        m.put("regs", regs(v.regs()));
        m.put("exit_counts", v.exitCounts());
        List<Object> exits = new ArrayList<>();
        for (ExitLog.Entry e : v.exits().entries()) {
            Map<String, Object> x = new LinkedHashMap<>();
            x.put("reason", e.exit().reason());
            x.putAll(e.exit().fields());
            if (e.resolution() != null) x.put("resolution", e.resolution());
            exits.add(x);
        }
        m.put("exits", exits);
        List<Object> faults = new ArrayList<>();
        for (Object x : exits) {
            if ("memory_fault".equals(((Map<?, ?>) x).get("reason"))) faults.add(x);
        }
        m.put("memory_faults", faults);
        if (v.exits().dropped() > 0) m.put("exits_not_logged", v.exits().dropped());
        List<String> reports = new ArrayList<>();
        for (long rep : v.reports()) reports.add("0x" + Long.toHexString(rep));
        m.put("reports", reports);
        if (!v.console().isEmpty()) m.put("console", v.console());
        m.put("run_ms", v.runNanos() / 1e6);
        return m;
    }

    public static Map<String, String> regs(Regs regs) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String n : Regs.REPORT_ORDER) m.put(n, "0x" + Long.toHexString(regs.byName(n)));
        return m;
    }
}
