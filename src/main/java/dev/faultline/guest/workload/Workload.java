package dev.faultline.guest.workload;

import dev.faultline.guest.GuestImage;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A built-in guest program built for one VM shape ({@link #params()}), with the Java-side model of
 * what it does, so a test can check a run: the memory it must leave ({@link #verify}) and the values
 * it reports ({@link #expectedReports}). Every vCPU ends with OUT to PORT_DONE carrying
 * {@link Workloads#DONE_OK}, then HLT.
 */
public interface Workload {
    /** Registry name ("seq-write", ...). */
    String name();

    WorkloadParams params();

    RegionLayout layout();

    /** The image: loads and enters at {@link RegionLayout#LOAD_GPA}. */
    GuestImage image();

    /**
     * Checks guest RAM after all vCPUs finished ({@code ram}: offset = gpa, at least
     * {@code params().memSize()} bytes): every word the workload writes holds its {@link PageStamp}.
     * Read-only workloads check nothing here: their outcome is in {@link #expectedReports}.
     * @throws WorkloadMismatchException naming how many words differ and the first one
     */
    void verify(MemorySegment ram);

    /**
     * The 64-bit values vCPU {@code vcpu} reports, in order; each travels as two OUTs of eax to
     * PORT_REPORT, low dword first ({@link #dwords}). {@code ram} is guest RAM as the workload found
     * it; the workloads that read RAM to report do not write it, so RAM after the run serves as well.
     */
    List<Long> expectedReports(int vcpu, MemorySegment ram);

    /** Page accesses (touches) one vCPU makes: the numerator of a pages-per-second figure. */
    long touchesPerVcpu();

    /** One line: name, vCPUs, slice, parameters. */
    String description();

    /** Reports as the guest sends them: low dword then high dword of each value. */
    static int[] dwords(List<Long> values) {
        int[] out = new int[values.size() * 2];
        for (int i = 0; i < values.size(); i++) {
            out[2 * i] = (int) (long) values.get(i);
            out[2 * i + 1] = (int) (values.get(i) >>> 32);
        }
        return out;
    }
}
