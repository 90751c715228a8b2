package dev.faultline.vmm;

import dev.faultline.hv.ExitReason;
import java.util.LinkedHashMap;
import java.util.Map;

/** Exit counts by reason for one vCPU: a fixed array, incremented without allocation. Single-writer. */
public final class ExitStats {
    private static final int MAX_REASON = 64;
    private final long[] counts = new long[MAX_REASON + 1];

    public void count(int reason) {
        counts[reason >= 0 && reason < MAX_REASON ? reason : MAX_REASON]++;
    }

    public long count(String reasonName) {
        for (int r = 0; r < MAX_REASON; r++) if (ExitReason.name(r).equals(reasonName)) return counts[r];
        return 0;
    }

    public long total() {
        long t = 0;
        for (long c : counts) t += c;
        return t;
    }

    public void addTo(ExitStats sum) {
        for (int i = 0; i < counts.length; i++) sum.counts[i] += counts[i];
    }

    /** Non-zero counts by reason name. */
    public Map<String, Long> asMap() {
        Map<String, Long> m = new LinkedHashMap<>();
        for (int r = 0; r < MAX_REASON; r++) if (counts[r] != 0) m.put(ExitReason.name(r), counts[r]);
        if (counts[MAX_REASON] != 0) m.put("other", counts[MAX_REASON]);
        return m;
    }
}
