package dev.faultline.migration;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Remote-fault latencies in time order (when, how long, which urgent connection), for the chart of
 * latency over time; the percentiles come from the paging core's HdrHistograms. Bounded: past
 * {@code capacity} samples only every other one is kept (the rest are still in the histograms).
 */
public final class LatencySamples {
    private final long origin;
    private long[] atNanos, latencyNanos;
    private int[] lane;
    private int count, keepEvery = 1, seen;

    public LatencySamples(long originNanos, int capacity) {
        this.origin = originNanos;
        this.atNanos = new long[capacity];
        this.latencyNanos = new long[capacity];
        this.lane = new int[capacity];
    }

    public synchronized void record(long startNanos, long nanos, int laneIndex) {
        if (seen++ % keepEvery != 0) return;
        if (count == atNanos.length) {
            int k = 0;
            for (int i = 0; i < count; i += 2, k++) {
                atNanos[k] = atNanos[i];
                latencyNanos[k] = latencyNanos[i];
                lane[k] = lane[i];
            }
            count = k;
            keepEvery *= 2;
        }
        atNanos[count] = startNanos - origin;
        latencyNanos[count] = nanos;
        lane[count++] = laneIndex;
    }

    public synchronized int size() { return count; }

    /** {"t_ms": [...] (ms since {@code zeroNanos}), "latency_us": [...], "connection": [...]} for the report and the chart. */
    public synchronized Map<String, Object> toMap(long zeroNanos) {
        long shift = zeroNanos - origin;
        List<Double> t = new ArrayList<>(count), l = new ArrayList<>(count);
        List<Integer> c = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            t.add(Math.round((atNanos[i] - shift) / 1e3) / 1e3);
            l.add(Math.round(latencyNanos[i] / 10.0) / 100.0);
            c.add(lane[i]);
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("kept_every", keepEvery);
        m.put("t_ms", t);
        m.put("latency_us", l);
        m.put("connection", c);
        return m;
    }
}
