package dev.faultline.telemetry;

import dev.faultline.paging.FaultCore;
import dev.faultline.paging.LaneStats;
import dev.faultline.paging.Prefetch;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;

/**
 * Prometheus metrics of demand paging, read at scrape time from the fault core's own per-lane
 * statistics ({@link LaneStats}: plain counters and HdrHistograms that each lane's thread writes
 * without a lock): the fault path pays nothing for being scraped, no allocation, no lock, no shared
 * counter. A scrape of a lane still serving reads its counters racily (each value is a whole long;
 * a scrape may miss the last few faults, never sees a torn value), and its histograms through a copy
 * whose buckets are summed consistently.
 *
 * <p>Series: totals over every guest served so far ({@code faultline_faults_total},
 * {@code faultline_pages_installed_total{cause}} with cause fault, readahead, replay or push,
 * {@code faultline_bytes_installed_total}, {@code faultline_fault_latency_seconds}), per live guest
 * ({@code faultline_vm_faults_total{vm}}, {@code faultline_vm_pages_installed_total{vm,cause}},
 * {@code faultline_vm_fault_latency_seconds{vm}}), {@code faultline_vms} and
 * {@code faultline_errors_total{kind}}. A guest's figures move into the totals when it is
 * {@link #retire retired}.
 */
public final class PagingMetrics implements MultiCollector {
    /** One demand-paged guest: a page server's VM, a restore, a migration's destination. */
    public interface Subject {
        /** The {@code vm} label: short, unique among live subjects. */
        String name();

        FaultCore core();

        /** The cause of a lane's background pages: push for lanes that take pages offered without a fault (migration). */
        default String backgroundCause(FaultCore.Lane lane) {
            return switch (core().prefetch()) {
                case Prefetch.Replay r -> "replay";
                case Prefetch.Readahead r -> "readahead";
                case Prefetch.None n -> "push";
            };
        }
    }

    /** Upper bounds of the latency buckets, in seconds (1 µs to 1 s). */
    static final double[] BOUNDS = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1,
            Double.POSITIVE_INFINITY};
    static final String[] CAUSES = {"fault", "readahead", "replay", "push"};

    private final List<Subject> live = new ArrayList<>();
    private final Map<String, LongAdder> retiredPages = new ConcurrentHashMap<>();
    private final LongAdder retiredFaults = new LongAdder(), retiredBytes = new LongAdder();
    private final Histogram retiredLatency = new Histogram(LaneStats.MAX_NANOS, 3);
    private final Map<String, LongAdder> errors = new ConcurrentHashMap<>();

    public PagingMetrics() {
        for (String c : CAUSES) retiredPages.put(c, new LongAdder());
    }

    /** A guest now being served: scraped live until it is {@link #retire retired}. */
    public synchronized void add(Subject s) {
        live.add(s);
    }

    /** Counts one error of {@code kind} (a short word: refused, failed, handshake, ...). */
    public void error(String kind) {
        errors.computeIfAbsent(kind, k -> new LongAdder()).increment();
    }

    /** Folds a guest that ended (its lanes' threads stopped) into the totals, and stops scraping it live (one step: no scrape counts it twice or not at all). */
    public synchronized void retire(Subject s) {
        live.remove(s);
        Figures f = figures(s);
        retiredFaults.add(f.faults);
        retiredBytes.add(f.bytes);
        f.pages.forEach((c, n) -> retiredPages.get(c).add(n));
        retiredLatency.add(f.latency);
    }

    /** One subject's figures, read now. */
    record Figures(long faults, long bytes, Map<String, Long> pages, Histogram latency) {}

    static Figures figures(Subject s) {
        long faults = 0, bytes = 0;
        Map<String, Long> pages = new LinkedHashMap<>();
        for (String c : CAUSES) pages.put(c, 0L);
        Histogram h = new Histogram(LaneStats.MAX_NANOS, 3);
        FaultCore core = s.core();
        for (FaultCore.Lane l : core.lanes()) {
            LaneStats st = l.stats();
            faults += st.faults();
            bytes += st.bytes();
            pages.merge("fault", st.faultPages(), Long::sum);
            pages.merge(s.backgroundCause(l), st.prefetchPages(), Long::sum);
            for (int v = 0; v <= core.vcpus(); v++) h.add(st.latency(v));
        }
        return new Figures(faults, bytes, pages, h);
    }

    @Override
    public synchronized MetricSnapshots collect() {
        List<Subject> subjects = new ArrayList<>(live);
        CounterSnapshot.Builder vmFaults = CounterSnapshot.builder().name("faultline_vm_faults").help("Faults served, per live guest");
        CounterSnapshot.Builder vmPages = CounterSnapshot.builder().name("faultline_vm_pages_installed")
                .help("Pages installed per live guest, by cause (fault: the faulting page and its run; readahead, replay, push: in the background)");
        HistogramSnapshot.Builder vmLatency = HistogramSnapshot.builder().name("faultline_vm_fault_latency_seconds")
                .help("Time to serve a fault (event read to install done), per live guest");
        long faults = retiredFaults.sum(), bytes = retiredBytes.sum();
        Map<String, Long> pages = new LinkedHashMap<>();
        for (String c : CAUSES) pages.put(c, retiredPages.get(c).sum());
        Histogram all = new Histogram(LaneStats.MAX_NANOS, 3);
        all.add(retiredLatency);
        for (Subject s : subjects) {
            Figures f = figures(s);
            faults += f.faults;
            bytes += f.bytes;
            f.pages.forEach((c, n) -> pages.merge(c, n, Long::sum));
            all.add(f.latency);
            Labels vm = Labels.of("vm", s.name());
            vmFaults.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().value(f.faults).labels(vm).build());
            f.pages.forEach((c, n) -> vmPages.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().value(n)
                    .labels(Labels.of("vm", s.name(), "cause", c)).build()));
            vmLatency.dataPoint(histogram(f.latency, vm));
        }
        CounterSnapshot.Builder pageTotals = CounterSnapshot.builder().name("faultline_pages_installed")
                .help("Pages installed over every guest served, by cause");
        pages.forEach((c, n) -> pageTotals.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().value(n).labels(Labels.of("cause", c)).build()));
        CounterSnapshot.Builder errorTotals = CounterSnapshot.builder().name("faultline_errors").help("Refusals and failures, by kind");
        errors.forEach((k, n) -> errorTotals.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().value(n.sum()).labels(Labels.of("kind", k)).build()));
        return MetricSnapshots.of(
                counter("faultline_faults", "Faults served over every guest", faults),
                pageTotals.build(),
                counter("faultline_bytes_installed", "Bytes installed over every guest", bytes),
                HistogramSnapshot.builder().name("faultline_fault_latency_seconds").help("Time to serve a fault, every guest")
                        .dataPoint(histogram(all, Labels.EMPTY)).build(),
                GaugeSnapshot.builder().name("faultline_vms").help("Guests being served now")
                        .dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder().value(subjects.size()).build()).build(),
                errorTotals.build(), vmFaults.build(), vmPages.build(), vmLatency.build());
    }

    private static CounterSnapshot counter(String name, String help, long value) {
        return CounterSnapshot.builder().name(name).help(help).dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().value(value).build()).build();
    }

    /** A classic histogram of an HdrHistogram (ns) that no thread writes: count per bucket, sum of the recorded values. */
    static HistogramSnapshot.HistogramDataPointSnapshot histogram(Histogram h, Labels labels) {
        long[] counts = new long[BOUNDS.length];
        long below = 0;
        for (int i = 0; i < BOUNDS.length; i++) {
            long upTo = Double.isInfinite(BOUNDS[i]) ? LaneStats.MAX_NANOS : (long) (BOUNDS[i] * 1e9);
            long c = h.getCountBetweenValues(0, upTo);
            counts[i] = Math.max(0, c - below);
            below = Math.max(below, c);
        }
        double sum = 0;
        for (HistogramIterationValue v : h.recordedValues()) sum += v.getValueIteratedTo() * (double) v.getCountAtValueIteratedTo();
        return HistogramSnapshot.HistogramDataPointSnapshot.builder().classicHistogramBuckets(ClassicHistogramBuckets.of(BOUNDS, counts))
                .sum(sum / 1e9).labels(labels).build();
    }
}
