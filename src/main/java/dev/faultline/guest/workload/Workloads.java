package dev.faultline.guest.workload;

import java.util.List;

/**
 * The built-in workloads by name (docs/workloads.md describes each):
 * <ul>
 *   <li>{@code seq-write}: stamp one word in every page of the slice, in order;</li>
 *   <li>{@code seq-read}: read one word of every page, report the sum;</li>
 *   <li>{@code random}: stamp every page once in a seeded random order ({@code seed});</li>
 *   <li>{@code stride}: stamp every {@code stride}-th page;</li>
 *   <li>{@code hot}: stamp a working set of {@code workingSetPages} (default 256) {@code rounds} times;</li>
 *   <li>{@code checksum}: report the {@link WordChecksum} of the slice;</li>
 *   <li>{@code phases}: a working set (default a quarter of the slice) that moves through the slice
 *       in {@code phases} steps of {@code rounds} rounds each, reporting each phase number.</li>
 * </ul>
 * Each vCPU works on its own slice of the region ({@link RegionLayout}); none shares.
 */
public final class Workloads {
    private Workloads() {}

    /** PORT_DONE code of a vCPU that finished its work. */
    public static final int DONE_OK = 0;
    /** PORT_DONE code when RSI (vCPU count) differs from the count the image was built for. */
    public static final int DONE_BAD_VCPU_COUNT = 2;
    /** PORT_DONE code when RDI (vCPU index) is not below the vCPU count. */
    public static final int DONE_BAD_VCPU_INDEX = 3;

    /** Default working set of hot, in pages (1 MiB). */
    public static final int DEFAULT_HOT_PAGES = 256;

    private static final List<String> NAMES = List.of("seq-write", "seq-read", "random", "stride", "hot", "checksum", "phases");

    public static List<String> names() { return NAMES; }

    /**
     * Builds workload {@code name} for {@code params}.
     * @throws WorkloadException for an unknown name or parameters the workload cannot run with
     */
    public static Workload build(String name, WorkloadParams params) {
        return switch (name) {
            case "seq-write" -> new StrideWrite(name, params, 1);
            case "stride" -> new StrideWrite(name, params, params.stride());
            case "seq-read" -> new SequentialRead(params);
            case "random" -> new RandomTouch(params);
            case "hot" -> new WorkingSet(name, params, 1, DEFAULT_HOT_PAGES, false);
            case "phases" -> new WorkingSet(name, params, params.phases(), RegionLayout.of(params.memSize(), params.vcpus()).pagesPerVcpu() / 4, true);
            case "checksum" -> new RegionChecksum(params);
            default -> throw new WorkloadException("unknown workload '" + name + "'; choose one of " + String.join(", ", NAMES));
        };
    }
}
