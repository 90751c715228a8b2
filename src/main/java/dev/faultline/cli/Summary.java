package dev.faultline.cli;

import java.io.PrintStream;
import java.util.List;
import java.util.Map;

/** The text summary of a migration, from the same map that --json prints. */
final class Summary {
    private Summary() {}

    static String mib(Object bytes) {
        return String.format("%.0f MiB", ((Number) bytes).longValue() / 1048576.0);
    }

    static void print(PrintStream out, Map<String, Object> s) {
        boolean ok = Boolean.TRUE.equals(s.get("verified"));
        out.println(ok ? "migration verified" : "migration NOT verified: " + s.get("problems"));
        out.printf("  guest            %s, %s of RAM, %s vCPU(s), %s of data; %s -> %s (%s)%n", s.get("guest"),
                mib(s.get("ram_bytes")), s.get("vcpus"), mib(s.get("data_filled_bytes")), s.get("source_backend"), s.get("destination_backend"), s.get("mode"));
        if (s.containsKey("transport")) out.printf("  transport        %s%n", s.get("transport"));
        out.printf("  downtime         %.1f ms (source paused until the destination's first vCPU entered the guest)%n", SourceSide.number(s.get("downtime_ms")));
        out.printf("  total time       %.1f ms (migration start to the last page at the destination)", SourceSide.number(s.get("total_ms")));
        if (s.containsKey("loopback_baseline_ms")) {
            out.printf("; moving the RAM size over loopback TCP: %.1f ms, ratio %.2f", SourceSide.number(s.get("loopback_baseline_ms")),
                    SourceSide.number(s.get("total_over_loopback")));
        }
        out.println();
        out.printf("  pages            %s demanded by faults, %s pushed (%s of them zero pages), %s pre-copied, %s at the switch-over, of %s%n",
                s.get("pages_demanded"), s.get("pages_pushed"), s.get("pages_pushed_as_zero"), s.get("pages_precopied"),
                s.get("pages_at_switchover"), s.get("pages_total"));
        out.printf("  on the wire      %.1f MiB%n", ((Number) s.get("bytes_on_wire")).longValue() / 1048576.0);
        if (s.get("push_ms") instanceof Map<?, ?> push) {
            out.printf("  push             %.1f ms, %.1f ms of CPU; the destination's installer used %s ms of CPU%n",
                    SourceSide.number(push.get("wall")), SourceSide.number(push.get("cpu")),
                    SourceSide.map(s.get("destination")).getOrDefault("push_installer_cpu_ms", "?"));
        }
        out.printf("  CPU priorities   source %s; destination %s%n", s.get("thread_priorities"),
                SourceSide.map(s.get("destination")).getOrDefault("thread_priorities", "?"));
        Object lat = s.get("fault_latency");
        if (lat instanceof List<?> l) {
            for (Object o : l) {
                Map<String, Object> m = SourceSide.map(o);
                out.printf("  remote faults    vCPU %s: %s faults, p50 %s us, p99 %s us, p99.9 %s us, max %s us%n", m.get("vcpu"), m.get("faults"),
                        m.get("p50_us"), m.get("p99_us"), m.get("p999_us"), m.get("max_us"));
            }
        }
        out.printf("  transfer digest  %s (%s)%n", s.get("transfer_digest"),
                Boolean.TRUE.equals(s.get("transfer_verified")) ? "equal on both sides" : "DIFFERENT");
        if (s.containsKey("reference_ram_sha256")) {
            out.printf("  RAM sha256       %s (destination's final RAM; the reference run on the source: %s)%n", s.get("ram_sha256"),
                    s.get("ram_sha256") != null && s.get("ram_sha256").equals(s.get("reference_ram_sha256")) ? "equal" : "DIFFERENT " + s.get("reference_ram_sha256"));
        } else {
            out.printf("  RAM sha256       %s (destination's final RAM; no reference run)%n", s.get("ram_sha256"));
        }
        if (s.containsKey("guest_verdict")) out.printf("  guest            %s%n", s.get("guest_verdict"));
    }
}
