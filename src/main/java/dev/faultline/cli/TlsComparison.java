package dev.faultline.cli;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * `demo --compare-tls`: the demo's migration over TLS and over plain TCP in one process, interleaved
 * round by round, and what TLS costs: total time, downtime and remote-fault p50/p99 per vCPU, the
 * medians of each and their ratios, against issue 13's targets (TLS total within 15% of plain,
 * remote-fault p99 under 1 ms).
 */
final class TlsComparison {
    /**
     * The figures of one run.
     * @param pushCpuMs      CPU time of the source's push thread (encrypting, over TLS)
     * @param installerCpuMs CPU time of the destination's installer of pushed pages (decrypting, over TLS)
     * @param setup          the source's and the destination's transport, with what their TLS warm-up did
     */
    record Figures(double totalMs, double downtimeMs, Map<String, double[]> faults, boolean verified, String transport,
                   double pushCpuMs, double installerCpuMs, List<String> setup) {
        /** From a demo summary (the map --json prints); faults: vCPU to {p50, p99} in µs. */
        static Figures of(Map<String, Object> s) {
            Map<String, double[]> faults = new LinkedHashMap<>();
            if (s.get("fault_latency") instanceof List<?> l) {
                for (Object o : l) {
                    Map<String, Object> m = SourceSide.map(o);
                    faults.put(String.valueOf(m.get("vcpu")), new double[] {SourceSide.number(m.get("p50_us")), SourceSide.number(m.get("p99_us"))});
                }
            }
            return new Figures(SourceSide.number(s.get("total_ms")), SourceSide.number(s.get("downtime_ms")), faults,
                    Boolean.TRUE.equals(s.get("verified")), String.valueOf(s.get("transport")), SourceSide.number(SourceSide.map(s.get("push_ms")).get("cpu")),
                    SourceSide.number(SourceSide.map(s.get("destination")).get("push_installer_cpu_ms")),
                    List.of("source: " + s.get("transport_setup"), "destination: " + SourceSide.map(s.get("destination")).get("transport_setup")));
        }
    }

    private final List<Figures> tls = new ArrayList<>(), plain = new ArrayList<>();
    private final List<String> order = new ArrayList<>();
    private final String setting;

    /** @param setting what was migrated, for the heading ("kvm, 1 GiB, 2 vCPUs") */
    TlsComparison(String setting) {
        this.setting = setting;
    }

    /** Whether round {@code round} (from 0) runs TLS first: alternating, so neither goes first every time. */
    static boolean tlsFirst(int round) {
        return round % 2 == 0;
    }

    void add(boolean overTls, Map<String, Object> summary) {
        (overTls ? tls : plain).add(Figures.of(summary));
        order.add(overTls ? "tls" : "plain");
    }

    boolean verified() {
        return tls.stream().allMatch(Figures::verified) && plain.stream().allMatch(Figures::verified);
    }

    static double median(List<Double> xs) {
        double[] a = xs.stream().mapToDouble(Double::doubleValue).filter(d -> !Double.isNaN(d)).sorted().toArray();
        if (a.length == 0) return Double.NaN;
        return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    }

    private static double round2(double x) {
        return Math.round(x * 100) / 100.0;
    }

    /** {@code a / b} to two decimals, or null where {@code b} is not a positive number (a vCPU without faults). */
    private static Double ratio(double a, double b) {
        return b > 0 && !Double.isNaN(a) ? round2(a / b) : null;
    }

    private TreeSet<String> vcpus() {
        TreeSet<String> v = new TreeSet<>();
        for (Figures f : tls) v.addAll(f.faults().keySet());
        for (Figures f : plain) v.addAll(f.faults().keySet());
        return v;
    }

    /** Medians of one side: total, downtime, and per vCPU p50 and p99. */
    private Map<String, Object> medians(List<Figures> runs) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("total_ms", round2(median(runs.stream().map(Figures::totalMs).toList())));
        m.put("downtime_ms", round2(median(runs.stream().map(Figures::downtimeMs).toList())));
        m.put("push_cpu_ms", round2(median(runs.stream().map(Figures::pushCpuMs).toList())));
        m.put("installer_cpu_ms", round2(median(runs.stream().map(Figures::installerCpuMs).toList())));
        Map<String, Object> p50 = new LinkedHashMap<>(), p99 = new LinkedHashMap<>();
        for (String v : vcpus()) {
            p50.put(v, round2(median(runs.stream().map(f -> f.faults().getOrDefault(v, new double[] {Double.NaN, Double.NaN})[0]).toList())));
            p99.put(v, round2(median(runs.stream().map(f -> f.faults().getOrDefault(v, new double[] {Double.NaN, Double.NaN})[1]).toList())));
        }
        m.put("fault_p50_us", p50);
        m.put("fault_p99_us", p99);
        return m;
    }

    private static Map<String, Object> runs(List<Figures> runs) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("total_ms", runs.stream().map(Figures::totalMs).toList());
        m.put("downtime_ms", runs.stream().map(Figures::downtimeMs).toList());
        m.put("push_cpu_ms", runs.stream().map(Figures::pushCpuMs).toList());
        m.put("installer_cpu_ms", runs.stream().map(Figures::installerCpuMs).toList());
        List<Object> faults = new ArrayList<>();
        for (Figures f : runs) {
            Map<String, Object> per = new LinkedHashMap<>();
            f.faults().forEach((v, p) -> per.put(v, Map.of("p50_us", p[0], "p99_us", p[1])));
            faults.add(per);
        }
        m.put("faults", faults);
        m.put("verified", runs.stream().map(Figures::verified).toList());
        m.put("transport", runs.isEmpty() ? "" : runs.get(0).transport());
        m.put("setup", runs.stream().map(Figures::setup).toList());
        return m;
    }

    @SuppressWarnings("unchecked")
    private static double at(Map<String, Object> m, String key, String vcpu) {
        Object o = m.get(key);
        if (vcpu != null) o = ((Map<String, Object>) o).get(vcpu);
        return SourceSide.number(o);
    }

    /** The comparison as one JSON object. */
    Map<String, Object> toMap(Map<String, Object> context) {
        Map<String, Object> mt = medians(tls), mp = medians(plain);
        Map<String, Object> ratio = new LinkedHashMap<>();
        ratio.put("total", ratio(at(mt, "total_ms", null), at(mp, "total_ms", null)));
        ratio.put("downtime", ratio(at(mt, "downtime_ms", null), at(mp, "downtime_ms", null)));
        ratio.put("push_cpu", ratio(at(mt, "push_cpu_ms", null), at(mp, "push_cpu_ms", null)));
        ratio.put("installer_cpu", ratio(at(mt, "installer_cpu_ms", null), at(mp, "installer_cpu_ms", null)));
        Map<String, Object> r50 = new LinkedHashMap<>(), r99 = new LinkedHashMap<>();
        double worstP99 = 0;
        for (String v : vcpus()) {
            r50.put(v, ratio(at(mt, "fault_p50_us", v), at(mp, "fault_p50_us", v)));
            r99.put(v, ratio(at(mt, "fault_p99_us", v), at(mp, "fault_p99_us", v)));
            for (Figures f : tls) worstP99 = Math.max(worstP99, f.faults().getOrDefault(v, new double[] {0, 0})[1]);
        }
        ratio.put("fault_p50", r50);
        ratio.put("fault_p99", r99);
        Map<String, Object> targets = new LinkedHashMap<>();
        targets.put("tls_total_within_15_percent", at(mt, "total_ms", null) <= 1.15 * at(mp, "total_ms", null));
        targets.put("tls_fault_p99_under_1ms_median", vcpus().stream().allMatch(v -> at(mt, "fault_p99_us", v) < 1000));
        targets.put("tls_fault_p99_worst_run_us", round2(worstP99));
        Map<String, Object> m = new LinkedHashMap<>(context);
        m.put("setting", setting);
        m.put("rounds", tls.size());
        m.put("order", order);
        m.put("median", Map.of("tls", mt, "plain", mp));
        m.put("tls_over_plain", ratio);
        m.put("targets", targets);
        m.put("tls", runs(tls));
        m.put("plain", runs(plain));
        m.put("verified", verified());
        return m;
    }

    void print(PrintStream out, Map<String, Object> context) {
        Map<String, Object> m = toMap(context);
        @SuppressWarnings("unchecked") Map<String, Object> med = (Map<String, Object>) m.get("median");
        @SuppressWarnings("unchecked") Map<String, Object> mt = (Map<String, Object>) med.get("tls");
        @SuppressWarnings("unchecked") Map<String, Object> mp = (Map<String, Object>) med.get("plain");
        out.printf("TLS against plain TCP: %s, %d round(s), interleaved (%s); medians:%n", setting, tls.size(), String.join(" ", order));
        out.printf("  %-22s %12s %12s %10s%n", "", "TLS", "plain", "TLS/plain");
        row(out, "total time (ms)", at(mt, "total_ms", null), at(mp, "total_ms", null));
        row(out, "downtime (ms)", at(mt, "downtime_ms", null), at(mp, "downtime_ms", null));
        row(out, "push CPU (ms)", at(mt, "push_cpu_ms", null), at(mp, "push_cpu_ms", null));
        row(out, "installer CPU (ms)", at(mt, "installer_cpu_ms", null), at(mp, "installer_cpu_ms", null));
        for (String v : vcpus()) {
            row(out, "fault p50 vCPU " + v + " (us)", at(mt, "fault_p50_us", v), at(mp, "fault_p50_us", v));
            row(out, "fault p99 vCPU " + v + " (us)", at(mt, "fault_p99_us", v), at(mp, "fault_p99_us", v));
        }
        out.printf("  per run, TLS total:   %s ms%n", Arrays.toString(tls.stream().mapToDouble(Figures::totalMs).toArray()));
        out.printf("  per run, plain total: %s ms%n", Arrays.toString(plain.stream().mapToDouble(Figures::totalMs).toArray()));
        out.printf("  TLS: %s%n", tls.isEmpty() ? "" : tls.get(0).transport());
        for (Figures f : tls) out.printf("  TLS run: %s%n", String.join("; ", f.setup()));
        out.printf("  targets: %s%n", m.get("targets"));
        out.printf("  every run verified: %s%n", verified() ? "yes" : "NO");
        if (context.containsKey("load_average")) out.printf("  load average before/after: %s%n", context.get("load_average"));
    }

    private static void row(PrintStream out, String what, double tlsValue, double plainValue) {
        Double r = ratio(tlsValue, plainValue);
        out.printf("  %-22s %12.1f %12.1f %10s%n", what, tlsValue, plainValue, r == null ? "-" : String.format("%.2f", r));
    }
}
