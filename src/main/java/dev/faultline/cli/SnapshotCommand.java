package dev.faultline.cli;

import dev.faultline.hv.Hypervisor;
import dev.faultline.snapshot.SnapshotDescription;
import dev.faultline.snapshot.SnapshotException;
import dev.faultline.snapshot.SnapshotFormat;
import dev.faultline.snapshot.SnapshotTaker;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.ReportJson;
import dev.faultline.vmm.RunReport;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "snapshot", header = "Pauses a running guest at a chosen point and writes a snapshot directory.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Runs a guest (the options of 'run'), pauses every vCPU at the chosen point (--at MS into the run,",
                "or --at-exit N: right after vCPU 0's N-th exit) and writes a snapshot directory (docs/snapshot.md):",
                "the description (snapshot.json), a page map and the non-zero pages. Then lets the guest finish and",
                "records how it ended (RAM SHA-256, each vCPU's end), which 'restore' compares against; or stops it",
                "(--then stop). Exit code 0 when the snapshot was written (and the guest finished cleanly)."})
final class SnapshotCommand implements Callable<Integer> {

    @ArgGroup(exclusive = true, multiplicity = "1")
    GuestOptions.Source source;

    @Mixin
    GuestOptions guest;

    static final class Point {
        @Option(names = "--at", paramLabel = "MS", description = "Pause this many milliseconds into the run.")
        Long atMillis;

        @Option(names = "--at-exit", paramLabel = "N", description = "Pause right after the N-th guest exit of vCPU --at-exit-vcpu (deterministic).")
        Long atExit;
    }

    @ArgGroup(exclusive = true, multiplicity = "1")
    Point point;

    @Option(names = "--at-exit-vcpu", paramLabel = "I", defaultValue = "0", description = "The vCPU whose exits --at-exit counts. Default: ${DEFAULT-VALUE}.")
    int atExitVcpu;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "The snapshot directory to write (must not hold a snapshot).")
    Path out;

    @Option(names = "--then", paramLabel = "WHAT", defaultValue = "finish",
            description = "After writing: finish (let the guest run to its end and record it) or stop. Default: ${DEFAULT-VALUE}.")
    String then;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    @Override
    public Integer call() {
        if (!then.equals("finish") && !then.equals("stop")) throw new UserError("--then is finish or stop, not '" + then + "'");
        if (point.atMillis != null && point.atMillis < 0) throw new UserError("--at must not be negative");
        if (point.atExit != null && point.atExit < 1) throw new UserError("--at-exit counts exits from 1, got " + point.atExit);
        if (atExitVcpu < 0 || atExitVcpu >= guest.vcpus) throw new UserError("--at-exit-vcpu " + atExitVcpu + " is not one of the " + guest.vcpus + " vCPUs");
        GuestOptions.Prepared prepared = guest.prepare(source);
        SnapshotDescription.Guest identity = identity();
        SnapshotDescription.Point at = point.atMillis != null ? SnapshotDescription.Point.afterMillis(point.atMillis)
                : SnapshotDescription.Point.atExit(atExitVcpu, point.atExit);
        boolean finish = then.equals("finish");
        try (Hypervisor hv = Backends.open(guest.backend); Machine m = new Machine(hv, prepared.spec(null))) {
            prepared.beforeRun(m.ram().segment());
            SnapshotTaker.Taken taken;
            try {
                taken = SnapshotTaker.take(m, hv.name(), at, identity, out, finish, Duration.ofSeconds(guest.timeoutSeconds));
            } catch (SnapshotException e) {
                throw new UserError(e.getMessage());
            }
            RunReport r = taken.finalReport();
            if (finish) prepared.verify(m, r);
            boolean ok = !finish || (r.clean() && prepared.verified());
            SnapshotDescription d = taken.written().description();
            if (json) {
                Map<String, Object> tree = new LinkedHashMap<>();
                tree.put("snapshot", summary(d, taken));
                tree.put("then", then);
                Map<String, Object> run = ReportJson.of(r);
                if (finish) prepared.describe(run);
                tree.put("run", run);
                Json.print(System.out, tree);
            } else {
                System.out.printf("snapshot of %s on %s written to %s: %s RAM, %d vCPU(s), paused %s%n", prepared.name(), hv.name(), out,
                        Units.formatSize(d.ramBytes()), d.vcpus().size(), d.point().describe());
                System.out.printf("  %d pages stored (%s), %d zero pages not stored, %d chunks; written in %.1f ms%n",
                        d.memory().storedPages(), Units.formatSize(d.memory().bytes()), d.memory().zeroPages(), SnapshotFormat.chunkCount(d.ramBytes()),
                        taken.written().nanos() / 1e6);
                if (finish) {
                    System.out.printf("  %s: the guest finished: %s; RAM sha256 %s%n", ok ? "ok" : "FAILED", prepared.verdict(), r.ramSha256());
                } else {
                    System.out.println("  the guest was stopped after the snapshot");
                }
            }
            return ok ? 0 : 1;
        }
    }

    private SnapshotDescription.Guest identity() {
        if (source.workload != null) return SnapshotDescription.Guest.workload(source.workload, guest.workloadParams());
        GuestOptions.ImageFile f = source.image;
        long load = f.loadGpa == null ? dev.faultline.guest.BootProtocol.DEFAULT_LOAD_GPA : f.loadGpa;
        long entry = f.entry == null ? load : f.entry;
        try {
            byte[] sha = MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f.file));
            return SnapshotDescription.Guest.image(f.file.toAbsolutePath().toString(), HexFormat.of().formatHex(sha), load, entry);
        } catch (IOException e) {
            throw new UserError("image file " + f.file + " cannot be read: " + e.getMessage());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 missing from the JDK", e);
        }
    }

    private static Map<String, Object> summary(SnapshotDescription d, SnapshotTaker.Taken t) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("dir", t.written().dir().toString());
        m.put("backend", d.backend());
        m.put("ram_bytes", d.ramBytes());
        m.put("vcpus", d.vcpus().size());
        m.put("point", d.point().describe());
        m.put("guest_exits", d.guestExits());
        m.put("stored_pages", d.memory().storedPages());
        m.put("zero_pages", d.memory().zeroPages());
        m.put("memory_file_bytes", d.memory().bytes());
        m.put("chunks", SnapshotFormat.chunkCount(d.ramBytes()));
        m.put("ram_sha256_at_snapshot", d.memory().ramSha256());
        m.put("pause_ms", t.pauseNanos() / 1e6);
        m.put("write_ms", t.written().nanos() / 1e6);
        if (d.originalRun() != null) m.put("original_run_ram_sha256", d.originalRun().ramSha256());
        return m;
    }
}
