package dev.faultline.snapshot;

import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.vmm.VcpuState;
import java.util.List;

/**
 * The contents of {@value SnapshotFormat#DESCRIPTION_FILE} (read and written by {@link DescriptionJson}).
 *
 * @param version     format version ({@link SnapshotFormat#VERSION})
 * @param backend     the backend the snapshot was taken on ("kvm", "ref")
 * @param created     when, ISO-8601
 * @param ramBytes    guest RAM size
 * @param memslots    the memslots RAM was installed as
 * @param point       where the guest was paused
 * @param guest       what ran, so that a restore can check its outcome
 * @param vcpus       every vCPU's architectural state, in vCPU order
 * @param guestExits  exits each vCPU's guest had made when paused
 * @param memory      the memory file: bytes, stored and zero pages, SHA-256 of all RAM when paused
 * @param pageMap     the page map file: bytes and SHA-256
 * @param chunkTable  the chunk table file (offset, stored pages and SHA-256 of every 1 MiB chunk): bytes and SHA-256
 * @param originalRun how the snapshotted guest finished when it was let run on, or null
 */
public record SnapshotDescription(int version, String backend, String created, long ramBytes, List<Memslot> memslots,
                                  Point point, Guest guest, List<VcpuState> vcpus, List<Long> guestExits,
                                  MemoryFile memory, IndexFile pageMap, IndexFile chunkTable, OriginalRun originalRun) {

    public SnapshotDescription {
        memslots = List.copyOf(memslots);
        vcpus = List.copyOf(vcpus);
        guestExits = List.copyOf(guestExits);
    }

    public SnapshotDescription withOriginalRun(OriginalRun run) {
        return new SnapshotDescription(version, backend, created, ramBytes, memslots, point, guest, vcpus, guestExits,
                memory, pageMap, chunkTable, run);
    }

    public record Memslot(int slot, long gpa, long bytes, int flags) {}

    /** {@code kind} "time" (paused {@code afterMillis} into the run) or "exit" ({@code vcpu}'s {@code exit}-th exit). */
    public record Point(String kind, long afterMillis, int vcpu, long exit) {
        public static Point afterMillis(long ms) { return new Point("time", ms, -1, -1); }
        public static Point atExit(int vcpu, long exit) { return new Point("exit", -1, vcpu, exit); }

        /** In words: "300 ms into the run", "after exit 3 of vCPU 0". */
        public String describe() {
            return kind.equals("time") ? afterMillis + " ms into the run" : "after exit " + exit + " of vCPU " + vcpu;
        }
    }

    /**
     * What ran: a built-in workload (name and parameters; the restore rebuilds it to check memory) or
     * an image (path, SHA-256, load address and entry).
     */
    public record Guest(String workload, WorkloadParams params, String image, String imageSha256, long loadGpa, long entry) {
        public static Guest workload(String name, WorkloadParams params) { return new Guest(name, params, null, null, 0, 0); }
        public static Guest image(String path, String sha256, long loadGpa, long entry) { return new Guest(null, null, path, sha256, loadGpa, entry); }
        public boolean isWorkload() { return workload != null; }
    }

    public record MemoryFile(String file, long bytes, long storedPages, long zeroPages, String ramSha256) {}

    /** A binary index file of the snapshot (page map, chunk table), checked whole by its length and SHA-256. */
    public record IndexFile(String file, long bytes, String sha256) {}

    /** How the guest ended when let run on after the snapshot: RAM hash and each vCPU's end. */
    public record OriginalRun(String ramSha256, List<VcpuEnd> vcpus) {
        public OriginalRun { vcpus = List.copyOf(vcpus); }
    }

    /** {@code reports}: every value the vCPU reported over the whole run, before and after the snapshot. */
    public record VcpuEnd(int index, String outcome, long doneCode, List<Long> reports) {
        public VcpuEnd { reports = List.copyOf(reports); }
    }
}
