package dev.faultline.service;

import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.snapshot.Restore;
import dev.faultline.snapshot.SnapshotDescription;
import dev.faultline.snapshot.SnapshotTaker;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.stream.Stream;

/**
 * What the service does before it listens: takes a small snapshot of its own (the phases workload,
 * 8 MiB, one vCPU) and has the service restore it a number of times on its backend, lazily where
 * that works (every fourth without prefetch), through the same path a client's request takes, so that the restore path's classes are loaded and linked, its FFM downcalls made and its
 * hot methods compiled before the first request. A request then costs what a restore costs, not what
 * a JVM's first restore costs (docs/snapshot.md gives both).
 *
 * @param restores                   restores done
 * @param mode                       the restores' mode ("lazy", or "eager" where lazy restores fail here)
 * @param lazyUnavailable            why lazy restores failed, or null
 * @param nanos                      the whole warm-up, snapshot included
 * @param lastFirstInstructionMillis the last restore's time to its first instruction
 */
public record WarmUp(int restores, String mode, String lazyUnavailable, long nanos, double lastFirstInstructionMillis) {
    static final long MEM = 8L << 20;

    /**
     * @throws IllegalStateException when the snapshot cannot be taken or a restore does not end as the
     *         snapshotted guest did: the service would not be fit to serve
     */
    static WarmUp run(String backend, int restores, Function<String, Map<String, Object>> serve, Consumer<String> log) {
        long t0 = System.nanoTime();
        if (restores == 0) return new WarmUp(0, "none", null, 0, 0);
        Path dir = null;
        try {
            dir = Files.createTempDirectory("faultline-warm-up-");
            Path snap = dir.resolve("snapshot");
            take(backend, snap);
            Restore.Mode mode = Restore.Mode.LAZY;
            String lazyUnavailable = null;
            double last = 0;
            for (int i = 1; i <= restores; i++) {
                String line = ServiceRequest.restoreLine(snap, mode, backend, null, i % 4 == 0 ? "none" : "readahead", 1, null, 60);
                Map<String, Object> reply = serve.apply(line);
                if (reply.containsKey("error_kind")) {
                    if (mode != Restore.Mode.LAZY) throw new IllegalStateException("warm-up restore " + i + ": " + reply.get("error"));
                    lazyUnavailable = String.valueOf(reply.get("error"));
                    log.accept("warm-up: a lazy restore failed on " + backend + " (" + lazyUnavailable + "); warming up with eager restores");
                    mode = Restore.Mode.EAGER;
                    i--;
                    continue;
                }
                if (!Boolean.TRUE.equals(reply.get("ok"))) {
                    throw new IllegalStateException("warm-up restore " + i + " did not end as the snapshotted guest did: "
                            + ((Map<?, ?>) reply.get("comparison")).get("verdict"));
                }
                ServiceJson.line(reply); // the answer is written too, as it would be to a client
                last = ((Number) ((Map<?, ?>) reply.get("service")).get("request_to_first_instruction_ms")).doubleValue();
                if (i == 1 || i == restores || i % 10 == 0) {
                    log.accept(String.format("warm-up: restore %d of %d (%s, %s): first instruction after %.1f ms", i, restores, mode.label(),
                            backend, last));
                }
            }
            return new WarmUp(restores, mode.label(), lazyUnavailable, System.nanoTime() - t0, last);
        } catch (IOException e) {
            throw new UncheckedIOException("warm-up: cannot make a temporary directory: " + e.getMessage(), e);
        } finally {
            if (dir != null) deleteTree(dir);
        }
    }

    private static void take(String backend, Path snap) {
        Workload w = Workloads.build("phases", WorkloadParams.of(MEM, 1).withRounds(3));
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, MachineSpec.of(MEM, 1, w.image()))) {
            SnapshotTaker.take(m, hv.name(), SnapshotDescription.Point.atExit(0, 3), SnapshotDescription.Guest.workload(w.name(), w.params()),
                    snap, true, Duration.ofMinutes(1));
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException ignored) {
            // a temporary directory left behind is not worth failing the service for
        }
    }
}
