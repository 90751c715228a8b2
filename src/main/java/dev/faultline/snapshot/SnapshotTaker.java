package dev.faultline.snapshot;

import dev.faultline.vmm.Machine;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import dev.faultline.vmm.VcpuState;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs a built machine to a snapshot point, pauses every vCPU, writes the snapshot, then stops the
 * guest or lets it finish and records how it finished ({@link SnapshotDescription.OriginalRun}),
 * which is what a restore must reproduce.
 */
public final class SnapshotTaker {
    private SnapshotTaker() {}

    /**
     * @param written      the snapshot
     * @param finalReport  the machine's report (after it finished, or after it was stopped)
     * @param pauseNanos   from the pause request until every vCPU was parked
     */
    public record Taken(SnapshotWriter.Written written, RunReport finalReport, long pauseNanos) {}

    /**
     * @param machine a machine built but not started; the caller closes it
     * @param finish  true: resume the guest after writing and record its end; false: stop it
     * @throws SnapshotException when the guest ended before the point (nothing is written) or writing failed
     */
    public static Taken take(Machine machine, String backend, SnapshotDescription.Point point, SnapshotDescription.Guest guest,
                             Path dir, boolean finish, Duration pauseTimeout) {
        Machine.Execution run;
        List<VcpuState> states;
        long pauseStart;
        if (point.kind().equals("exit")) {
            run = machine.startPausingAtExit(point.vcpu(), point.exit());
            pauseStart = System.nanoTime();
            try {
                states = run.awaitPausePoint(pauseTimeout);
            } catch (IllegalStateException e) {
                run.stop("no snapshot: " + e.getMessage());
                run.await();
                throw new SnapshotException("the guest never reached its snapshot point: " + e.getMessage(), e);
            }
        } else {
            run = machine.start();
            sleepMillis(point.afterMillis());
            pauseStart = System.nanoTime();
            states = run.pause(pauseTimeout);
        }
        long pauseNanos = System.nanoTime() - pauseStart;
        List<Long> exits = new ArrayList<>();
        for (int i = 0; i < states.size(); i++) {
            if (run.hasFinished(i)) {
                run.resume();
                RunReport r = run.await();
                throw new SnapshotException("vCPU " + i + " had already ended (" + r.vcpus().get(i).outcome().name().toLowerCase() + ", "
                        + r.vcpus().get(i).detail() + ") when the snapshot point came; choose an earlier point");
            }
            exits.add(run.guestExits(i));
        }
        SnapshotWriter.Written w;
        try {
            w = SnapshotWriter.write(dir, machine.ram().segment(), backend, states, exits, point, guest);
        } catch (RuntimeException e) {
            run.stop("snapshot failed");
            run.await();
            throw e;
        }
        if (!finish) {
            run.stop("stopped after the snapshot");
            return new Taken(w, run.await(), pauseNanos);
        }
        run.resume();
        RunReport r = run.await();
        SnapshotDescription d = w.description().withOriginalRun(originalRun(r));
        SnapshotWriter.writeDescription(dir, d);
        return new Taken(new SnapshotWriter.Written(dir, d, w.nanos()), r, pauseNanos);
    }

    static SnapshotDescription.OriginalRun originalRun(RunReport r) {
        List<SnapshotDescription.VcpuEnd> ends = new ArrayList<>();
        for (VcpuResult v : r.vcpus()) {
            List<Long> reps = new ArrayList<>();
            for (long x : v.reports()) reps.add(x);
            ends.add(new SnapshotDescription.VcpuEnd(v.index(), v.outcome().name().toLowerCase(), v.doneCode(), reps));
        }
        return new SnapshotDescription.OriginalRun(r.ramSha256(), ends);
    }

    private static void sleepMillis(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SnapshotException("interrupted before the snapshot point", e);
        }
    }
}
