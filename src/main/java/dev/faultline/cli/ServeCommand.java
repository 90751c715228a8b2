package dev.faultline.cli;

import dev.faultline.guest.BootProtocol;
import dev.faultline.service.RestoreService;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.MetricsServer;
import dev.faultline.telemetry.PagingMetrics;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

@Command(name = "serve", header = "Waits, warmed up, for snapshots to restore, on a Unix socket.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Starts a restore service: a VMM process started ahead of the snapshot load, as VMMs restore snapshots.",
                "It opens the backend, warms up (takes a small snapshot of its own and restores it --warm-up times, so the",
                "restore path is loaded, linked and compiled), then listens on --socket. 'faultline restore DIR --lazy",
                "--server SOCKET' sends it a restore; so can any program: one JSON object per line, each way",
                "(docs/snapshot.md). Restores run one at a time, in arrival order; each answer is the report that",
                "'restore --json' prints plus the time from the request's arrival to the first guest instruction.",
                "Between restores it keeps the backend open and a VM (RAM and memslots, no vCPU) built for the last",
                "restore's RAM size, which the next restore of that size takes instead of building its own.",
                "Progress and one line per request go to stderr. Runs until interrupted (SIGINT, SIGTERM) or --requests",
                "restores are served; the socket file exists exactly while it listens. With --metrics-port it serves",
                "Prometheus metrics of its restores' demand paging; with --events a JSON line per restore start, first",
                "instruction, end and failure (docs/pageserver.md)."})
final class ServeCommand implements Callable<Integer> {
    @Option(names = "--socket", paramLabel = "PATH", required = true,
            description = "The Unix socket to listen on (a stale one is replaced; one a live service holds is refused).")
    Path socket;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "auto",
            description = "kvm, ref, or auto (kvm where /dev/kvm works): the backend of requests that name none. Default: ${DEFAULT-VALUE}.")
    String backend;

    @Option(names = "--warm-up", paramLabel = "N", defaultValue = "30",
            description = "Restores of the service's own small snapshot before it listens (0: none). Default: ${DEFAULT-VALUE}.")
    int warmUp;

    @Option(names = "--vm-ahead", paramLabel = "SIZE", converter = Units.SizeConverter.class,
            description = "Build a VM with this much RAM before listening, for the first restore of that size. After each restore the "
                    + "service builds one of that restore's size for the next. Default: none.")
    Long vmAhead;

    @Option(names = "--requests", paramLabel = "N", defaultValue = "0",
            description = "End after serving this many restores (0: run until interrupted). Default: ${DEFAULT-VALUE}.")
    long requests;

    @Mixin
    TelemetryOptions telemetry;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws InterruptedException {
        PrintWriter err = spec.commandLine().getErr(); // stderr; a test gives the command line its own
        if (warmUp < 0) throw new UserError("--warm-up takes 0 or more restores, not " + warmUp);
        if (requests < 0) throw new UserError("--requests takes 0 (no limit) or more, not " + requests);
        if (vmAhead != null && (vmAhead % 4096 != 0 || vmAhead < BootProtocol.IMAGE_MIN_GPA + 4096 || vmAhead > BootProtocol.MAX_RAM)) {
            throw new UserError("--vm-ahead " + Units.formatSize(vmAhead) + " is not a RAM size a snapshot can have (a multiple of 4 KiB from "
                    + Units.formatSize(BootProtocol.IMAGE_MIN_GPA + 4096) + " to " + Units.formatSize(BootProtocol.MAX_RAM) + ")");
        }
        PagingMetrics metrics = new PagingMetrics();
        EventLog events = telemetry.openEvents();
        MetricsServer metricsServer = telemetry.startMetrics("serve", err, metrics);
        RestoreService s;
        try {
            s = RestoreService.start(new RestoreService.Config(socket, backend, warmUp, requests, vmAhead == null ? 0 : vmAhead, line -> {
                err.println("serve: " + line);
                err.flush();
            }, events, metrics));
        } catch (IllegalStateException e) {
            if (metricsServer != null) metricsServer.close();
            throw new UserError("the warm-up failed, so the service would not be fit to serve: " + e.getMessage());
        }
        events.emit("listening", "socket", socket.toString(), "backend", s.backend());
        // On SIGINT or SIGTERM: stop listening and remove the socket, without waiting for a guest under way.
        Thread hook = new Thread(() -> {
            s.stopListening();
            err.println("serve: stopped by a signal; " + socket + " removed");
            err.flush();
        }, "restore-service-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        s.awaitEnd();
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException shuttingDown) {
            // the hook is running: it closes the service
        }
        if (metricsServer != null) metricsServer.close();
        events.emit("closed", "restores_served", s.restoresServed());
        events.close();
        err.println("serve: ended");
        err.flush();
        return 0;
    }
}
