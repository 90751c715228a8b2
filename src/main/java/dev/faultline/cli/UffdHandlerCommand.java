package dev.faultline.cli;

import dev.faultline.pageserver.MemoryFile;
import dev.faultline.pageserver.PageServer;
import dev.faultline.paging.PageSource;
import dev.faultline.paging.PageSourceException;
import dev.faultline.snapshot.Snapshot;
import dev.faultline.snapshot.SnapshotException;
import dev.faultline.snapshot.SnapshotSource;
import dev.faultline.paging.Prefetch;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.MetricsServer;
import dev.faultline.telemetry.PagingMetrics;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "uffd-handler", header = "Serves the page faults of Firecracker guests restored lazily (its Uffd memory backend).",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"A page-fault handler for VMMs that restore snapshots the way Firecracker does (PUT /snapshot/load with",
                "mem_backend {backend_type: Uffd, backend_path: SOCKET}): it listens on --socket; each VMM connects once and sends",
                "its guest regions as JSON with its userfaultfd attached; from then on every first touch of that guest's memory",
                "is served from --mem-file (UFFDIO_COPY from one shared mapping of the file), balloon removes read as zeros,",
                "and many VMs are served at once, one connection each. Speaks every handshake from Firecracker v1.1 to main",
                "(docs/pageserver.md). Peers are checked before anything is read from them (--allow-uid); the socket is made",
                "mode 0600. Runs until interrupted (SIGINT, SIGTERM), or until --vms VMs were served, or (--on-failure exit)",
                "until a VM fails. Exit 0, 1 after a failure that ended it, 2 for bad options."})
final class UffdHandlerCommand implements Callable<Integer> {
    @Option(names = "--socket", paramLabel = "PATH", required = true,
            description = "The Unix socket to listen on (Firecracker's backend_path). Its directory must not be writable by other users "
                    + "unless sticky; a stale socket is replaced, a live one refused.")
    Path socket;

    static final class Source {
        @Option(names = "--mem-file", paramLabel = "FILE", required = true,
                description = "The snapshot's memory file (Firecracker's mem_file_path): guest memory, region after region from offset 0.")
        Path memFile;

        @Option(names = "--snapshot", paramLabel = "DIR", required = true,
                description = "A faultline snapshot directory instead: its guest RAM is the memory (file offset = guest-physical address), "
                        + "checked as 'restore' checks it (each chunk's SHA-256 on first touch). For 'restore DIR --lazy --uffd-handler SOCKET'.")
        Path snapshot;
    }

    @ArgGroup(exclusive = true, multiplicity = "1")
    Source source;

    @Option(names = "--allow-uid", paramLabel = "UID",
            description = "A user id whose processes may connect (repeatable). Default: this process's own uid only.")
    List<Integer> allowUids;

    @Option(names = "--max-vms", paramLabel = "N", defaultValue = "64", description = "VMs served at once; more are refused. Default: ${DEFAULT-VALUE}.")
    int maxVms;

    @Option(names = "--prefetch", paramLabel = "KIND", defaultValue = "none",
            description = "Per VM: none (one page per fault, as Firecracker's example handlers), readahead (sequential runs, in the "
                    + "background), or replay:FILE (a working set recorded with --record-working-set, installed in the background "
                    + "from the handshake on). Default: ${DEFAULT-VALUE}.")
    String prefetch;

    @Option(names = "--record-working-set", paramLabel = "FILE",
            description = "Record the pages the first VM touches (in file offsets, first touch first) and write them to FILE when --record-ms "
                    + "has passed or the VM ends.")
    Path recordWorkingSet;

    @Option(names = "--record-ms", paramLabel = "MS", defaultValue = "0",
            description = "How long from the handshake to record (0: the VM's whole life). Default: ${DEFAULT-VALUE}.")
    long recordMs;

    @Option(names = "--on-failure", paramLabel = "WHAT", defaultValue = "close",
            description = "When serving a VM fails (its memory file unreadable, a fault the protocol does not explain): close (report and "
                    + "close its connection; the VMM's guest then waits), kill (also SIGKILL the VMM process, as Firecracker's example "
                    + "handlers do), or exit (end the handler with exit code 1). Default: ${DEFAULT-VALUE}.")
    String onFailure;

    @Option(names = "--handshake-timeout-ms", paramLabel = "MS", defaultValue = "5000",
            description = "How long a connection may take to send its handshake. Default: ${DEFAULT-VALUE}.")
    int handshakeTimeoutMs;

    @Option(names = "--populate", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Map the memory file's pages into this process up front (MAP_POPULATE, as Firecracker's examples do), so no "
                    + "install waits for the file; --no-populate maps them as first used. Default: on.")
    boolean populate;

    @Option(names = "--vms", paramLabel = "N", defaultValue = "0",
            description = "End after N VMs were served and ended (0: run until interrupted). Default: ${DEFAULT-VALUE}.")
    long vms;

    @Mixin
    TelemetryOptions telemetry;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws InterruptedException {
        PrintWriter err = spec.commandLine().getErr();
        if (maxVms < 1 || maxVms > 4096) throw new UserError("--max-vms takes 1 to 4096, not " + maxVms);
        if (recordMs < 0 || recordMs > 86_400_000L) throw new UserError("--record-ms takes 0 (whole life) to 86400000, not " + recordMs);
        if (recordMs > 0 && recordWorkingSet == null) throw new UserError("--record-ms needs --record-working-set FILE");
        if (handshakeTimeoutMs < 1 || handshakeTimeoutMs > 600_000) throw new UserError("--handshake-timeout-ms takes 1 to 600000, not " + handshakeTimeoutMs);
        if (vms < 0) throw new UserError("--vms takes 0 (no limit) or more, not " + vms);
        PageServer.OnFailure failure = switch (onFailure) {
            case "close" -> PageServer.OnFailure.CLOSE;
            case "kill" -> PageServer.OnFailure.KILL;
            case "exit" -> PageServer.OnFailure.EXIT;
            default -> throw new UserError("--on-failure is close, kill or exit, not '" + onFailure + "'");
        };
        Set<Integer> uids = new HashSet<>();
        if (allowUids == null || allowUids.isEmpty()) uids.add(ownUid());
        else for (int u : allowUids) {
            if (u < 0) throw new UserError("--allow-uid " + u + " is not a user id");
            uids.add(u);
        }
        if (recordWorkingSet != null && prefetch.startsWith("replay:")) throw new UserError("--record-working-set records a VM served without replay: --prefetch none");
        if (recordWorkingSet != null && !prefetch.equals("none")) {
            throw new UserError("--record-working-set records the pages a VM faults on; with --prefetch " + prefetch + " pages installed ahead "
                    + "of a touch are never seen: use --prefetch none");
        }
        Prefetch p;
        try {
            p = Prefetch.parse(prefetch);
        } catch (IllegalArgumentException e) {
            throw new UserError("--prefetch is " + e.getMessage());
        } catch (PageSourceException e) {
            throw new UserError("--prefetch: " + e.getMessage());
        }
        PageSource file;
        long fileBytes;
        if (source.memFile != null) {
            try {
                MemoryFile f = MemoryFile.open(source.memFile, populate);
                file = f;
                fileBytes = f.size();
            } catch (IllegalArgumentException e) {
                throw new UserError(e.getMessage());
            }
        } else {
            try {
                Snapshot snap = Snapshot.open(source.snapshot);
                file = new SnapshotFile(snap);
                fileBytes = snap.ramBytes();
            } catch (SnapshotException e) {
                throw new UserError(e.getMessage());
            }
        }
        PagingMetrics metrics = new PagingMetrics();
        try (file; EventLog events = telemetry.openEvents(); MetricsServer m = telemetry.startMetrics("uffd-handler", err, metrics)) {
            PageServer server;
            try {
                server = PageServer.start(new PageServer.Config(socket, uids, maxVms, file, fileBytes, p, recordWorkingSet, recordMs, failure,
                        handshakeTimeoutMs, events, metrics, line -> {
                            err.println("uffd-handler: " + line);
                            err.flush();
                        }));
            } catch (IllegalArgumentException e) {
                throw new UserError(e.getMessage());
            }
            java.util.concurrent.atomic.AtomicLong endedCount = new java.util.concurrent.atomic.AtomicLong();
            if (vms > 0) server.onVmEnded(v -> { if (endedCount.incrementAndGet() == vms) Thread.ofPlatform().daemon().start(server::close); });
            Thread hook = new Thread(server::close, "uffd-handler-shutdown");
            Runtime.getRuntime().addShutdownHook(hook);
            err.println("uffd-handler: listening on " + socket + " (" + file.describe() + ", prefetch " + Prefetch.describe(p) + ", uids " + uids
                    + (m == null ? "" : ", metrics on port " + m.port()) + ")");
            err.flush();
            boolean clean = server.awaitEnd();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook runs: it closes the server
            }
            if (!clean) {
                err.println("uffd-handler: ended by a failure: " + server.fatalFailure());
                return 1;
            }
            err.println("uffd-handler: ended; " + server.connectionsAccepted() + " VMs served, " + server.connectionsRefused() + " refused, "
                    + server.failures() + " failed");
            return 0;
        }
    }

    /** A snapshot's RAM as the handler's memory: {@link SnapshotSource}'s pages (chunks checked on first touch), the snapshot closed with it. */
    private record SnapshotFile(Snapshot snap, SnapshotSource pages) implements PageSource {
        SnapshotFile(Snapshot snap) { this(snap, new SnapshotSource(snap)); }
        @Override public void fill(long gpa, java.lang.foreign.MemorySegment dst, long off, long len) { pages.fill(gpa, dst, off, len); }
        @Override public boolean isZero(long gpa, long len) { return pages.isZero(gpa, len); }
        @Override public String describe() { return "snapshot of " + snap.ramBytes() + " bytes of RAM"; }
        @Override public void close() { snap.close(); }
    }

    static int ownUid() {
        try {
            return (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        } catch (java.io.IOException | UnsupportedOperationException e) {
            throw new UserError("cannot learn this process's uid from /proc/self: " + e.getMessage());
        }
    }
}
