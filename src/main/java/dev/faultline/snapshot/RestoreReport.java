package dev.faultline.snapshot;

import dev.faultline.paging.Prefetch;
import dev.faultline.vmm.ReportJson;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The JSON shape of a {@link Restore.Result}: what {@code restore --json} prints and what the restore
 * service ({@code faultline serve}) answers, so both read the same (docs/snapshot.md describes it).
 */
public final class RestoreReport {
    private RestoreReport() {}

    /** The report of restoring {@code dir} with {@code prefetch} (named only for lazy restores). */
    public static Map<String, Object> of(Path dir, Restore.Result r, Prefetch prefetch) {
        Map<String, Object> t = new LinkedHashMap<>();
        SnapshotDescription d = r.snapshot();
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("dir", dir.toString());
        s.put("taken_on", d.backend());
        s.put("ram_bytes", d.ramBytes());
        s.put("vcpus", d.vcpus().size());
        s.put("stored_pages", d.memory().storedPages());
        s.put("point", d.point().describe());
        t.put("snapshot", s);
        t.put("backend", r.backend());
        t.put("mode", r.mode().label());
        t.put("verify", r.verify().label());
        if (r.mode() == Restore.Mode.LAZY) {
            t.put("prefetch", Prefetch.name(prefetch));
            t.put("delivery", r.delivery().label());
        }
        t.put("timings", r.timings().toMap());
        t.put("chunks_verified", r.chunksVerified());
        t.put("bytes_read", r.bytesRead());
        if (r.paging() != null) {
            Map<String, Object> pg = new LinkedHashMap<>();
            pg.put("faults", r.paging().faults());
            pg.put("pages_installed", r.paging().pagesInstalled());
            pg.put("prefetch_pages", r.paging().prefetchPages());
            t.put("paging", pg);
        }
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("original_run_recorded", r.comparison().recorded());
        if (d.originalRun() != null) c.put("expected_ram_sha256", d.originalRun().ramSha256());
        c.put("ram_sha256", r.report().ramSha256());
        c.put("ram_matches", r.comparison().ramMatches());
        c.put("vcpus_match", r.comparison().vcpusMatch());
        c.put("workload", r.comparison().workloadVerdict());
        c.put("verdict", r.comparison().verdict());
        t.put("comparison", c);
        if (r.recordedPages() >= 0) t.put("working_set_recorded_pages", r.recordedPages());
        if (r.failure() != null) t.put("failure", r.failure());
        t.put("ok", r.ok());
        t.put("run", ReportJson.of(r.report()));
        return t;
    }
}
