package dev.faultline.service;

import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PagingStats;
import dev.faultline.snapshot.Restore;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.PagingMetrics;
import java.nio.file.Path;

/**
 * What the restore service tells a platform about each restore: events (restore_start,
 * first_instruction, restore_end, failure) and the restore's demand paging as a live subject of the
 * Prometheus metrics while it runs, folded into the totals when it ends.
 */
final class ServiceTelemetry {
    private final EventLog events;
    private final PagingMetrics metrics;

    ServiceTelemetry(EventLog events, PagingMetrics metrics) {
        this.events = events;
        this.metrics = metrics;
    }

    /** One restore's watch: the {@link Restore.Observer} it runs with, and its end. */
    Restoring restoring(Path dir, long request) {
        String name = "restore-" + request;
        events.emit("restore_start", "vm", name, "dir", dir.toString());
        return new Restoring(name, this);
    }

    static class Restoring implements Restore.Observer {
        static final Restoring NONE = new Restoring(null, null);

        private final String name;
        private final ServiceTelemetry t;
        private volatile PagingMetrics.Subject subject;

        Restoring(String name, ServiceTelemetry t) {
            this.name = name;
            this.t = t;
        }

        @Override
        public void pagingStarted(FaultCore core) {
            if (t == null) return;
            PagingMetrics.Subject s = new PagingMetrics.Subject() {
                @Override public String name() { return name; }
                @Override public FaultCore core() { return core; }
            };
            subject = s;
            t.metrics.add(s);
        }

        @Override
        public void firstInstruction(long nanos) {
            if (t != null) t.events.emit("first_instruction", "vm", name, "ms_after_restore_start", nanos / 1e6);
        }

        void ended(Restore.Result r) {
            if (t == null) return;
            retire();
            PagingStats p = r.paging();
            t.events.emit("restore_end", "vm", name, "ok", r.ok(), "to_first_instruction_ms", r.timings().firstEntry() / 1e6,
                    "to_completion_ms", r.timings().ended() / 1e6, "faults", p == null ? 0 : p.faults(),
                    "pages_installed", p == null ? 0 : p.pagesInstalled(), "verdict", r.comparison().verdict());
            if (!r.ok()) t.metrics.error("restore-failed");
        }

        void failed(String kind, String message) {
            if (t == null) return;
            retire();
            t.metrics.error(kind);
            t.events.emit("failure", "vm", name, "kind", kind, "reason", message);
        }

        private void retire() {
            PagingMetrics.Subject s = subject;
            if (s != null) t.metrics.retire(s);
            subject = null;
        }
    }
}
