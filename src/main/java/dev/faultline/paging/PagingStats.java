package dev.faultline.paging;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.HdrHistogram.Histogram;

/**
 * The figures of a paging run, merged from every lane after the lanes' threads have stopped:
 * totals, per-vCPU fault latency (HdrHistogram, recorded in ns, reported in µs) and per-lane
 * handler counters. {@link #toMap()} is the JSON shape the benchmark prints.
 */
public final class PagingStats {
    private final List<FaultCore.Lane> lanes;
    private final int vcpus;

    public PagingStats(FaultCore core) {
        this.lanes = core.lanes();
        this.vcpus = core.vcpus();
    }

    /** Fault latency of vCPU {@code v} across all lanes (v == vcpus: faults of threads that are no vCPU). */
    public Histogram latency(int v) {
        Histogram h = new Histogram(LaneStats.MAX_NANOS, 3);
        for (FaultCore.Lane l : lanes) h.add(l.stats().latency(v));
        return h;
    }

    public long faults() { return lanes.stream().mapToLong(l -> l.stats().faults()).sum(); }
    public long pagesInstalled() { return lanes.stream().mapToLong(l -> l.stats().pagesInstalled()).sum(); }
    public long prefetchPages() { return lanes.stream().mapToLong(l -> l.stats().prefetchPages()).sum(); }
    public long minorEvents() { return lanes.stream().mapToLong(l -> l.stats().minorEvents()).sum(); }
    public long missingEvents() { return lanes.stream().mapToLong(l -> l.stats().missingEvents()).sum(); }
    public long removes() { return lanes.stream().mapToLong(l -> l.stats().removes()).sum(); }
    public long eexist() { return lanes.stream().mapToLong(l -> l.stats().eexist()).sum(); }

    /** p50/p99/p99.9/max in µs and the count of one histogram. */
    public static Map<String, Object> percentiles(Histogram h) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("faults", h.getTotalCount());
        m.put("p50_us", micros(h.getValueAtPercentile(50)));
        m.put("p99_us", micros(h.getValueAtPercentile(99)));
        m.put("p999_us", micros(h.getValueAtPercentile(99.9)));
        m.put("max_us", micros(h.getMaxValue()));
        m.put("mean_us", Math.round(h.getMean() / 10.0) / 100.0);
        return m;
    }

    /**
     * A thread's {@link ThreadTimes} over {@code n} events (faults, pages): CPU µs, run-queue wait µs and
     * switches per event, and the totals. Empty when the times are unknown.
     */
    public static Map<String, Object> threadTimes(ThreadTimes t, long n) {
        Map<String, Object> m = new LinkedHashMap<>();
        if (t == ThreadTimes.NONE || n <= 0) return m;
        m.put("cpu_ms", Math.round(t.cpuNanos() / 1e4) / 100.0);
        m.put("runqueue_wait_ms", Math.round(t.waitNanos() / 1e4) / 100.0);
        m.put("switches", t.switches());
        m.put("cpu_us_per_event", micros(t.cpuNanos() / n));
        m.put("runqueue_wait_us_per_event", micros(t.waitNanos() / n));
        m.put("switches_per_event", Math.round(t.switches() * 100.0 / n) / 100.0);
        return m;
    }

    private static double micros(long nanos) {
        return Math.round(nanos / 10.0) / 100.0;
    }

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("faults", faults());
        m.put("pages_installed", pagesInstalled());
        m.put("pages_prefetched", prefetchPages());
        m.put("bytes_installed", lanes.stream().mapToLong(l -> l.stats().bytes()).sum());
        List<Object> perVcpu = new ArrayList<>();
        for (int v = 0; v < vcpus; v++) {
            Map<String, Object> x = new LinkedHashMap<>();
            x.put("vcpu", v);
            x.putAll(percentiles(latency(v)));
            perVcpu.add(x);
        }
        m.put("fault_latency", perVcpu);
        Histogram other = latency(vcpus);
        if (other.getTotalCount() > 0) m.put("fault_latency_other_threads", percentiles(other));
        List<Object> handlers = new ArrayList<>();
        for (FaultCore.Lane l : lanes) {
            LaneStats s = l.stats();
            Map<String, Object> x = new LinkedHashMap<>();
            x.put("lane", l.name());
            x.put("range", String.format("[0x%x, 0x%x)", l.firstGpa(), l.endGpa()));
            x.put("faults", s.faults());
            x.put("pages_by_faults", s.faultPages());
            x.put("pages_prefetched", s.prefetchPages());
            x.put("install_calls", s.installCalls());
            x.put("missing_events", s.missingEvents());
            x.put("minor_events", s.minorEvents());
            x.put("eexist", s.eexist());
            x.put("eagain", s.eagain());
            x.put("waits_for_other_lane", s.waits());
            x.put("faults_on_present_pages", s.presentWakes());
            x.put("remove_events", s.removes());
            x.put("removed_pages", s.removedPages());
            Map<String, Object> t = threadTimes(s.threadTimes(), s.faults() + s.presentWakes() + s.waits());
            if (!t.isEmpty()) x.put("thread_per_event", t);
            handlers.add(x);
        }
        m.put("lanes", handlers);
        return m;
    }
}
