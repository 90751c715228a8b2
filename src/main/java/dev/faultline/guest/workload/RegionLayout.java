package dev.faultline.guest.workload;

import dev.faultline.guest.BootProtocol;

/**
 * Where a workload's vCPUs work: the region runs from the first 2 MiB boundary above the image
 * (workload images are at most {@link #IMAGE_RESERVE} bytes at {@link BootProtocol#DEFAULT_LOAD_GPA},
 * so it starts at 0x400000) to the end of RAM, and is split into equal page-aligned slices, one per
 * vCPU; pages left over at the end belong to nobody.
 *
 * <pre>
 *  0x200000 image | 0x400000 slice 0 | slice 1 | ... | slice n-1 | (leftover pages) | RAM end
 * </pre>
 */
public record RegionLayout(long regionStart, long regionEnd, int vcpus, long pagesPerVcpu) {
    public static final long PAGE = 4096;
    public static final long LOAD_GPA = BootProtocol.DEFAULT_LOAD_GPA;
    public static final long IMAGE_RESERVE = 64 * 1024;
    public static final long REGION_ALIGN = 2L << 20;

    /**
     * The layout for {@code memSize} bytes of RAM and {@code vcpus} vCPUs.
     * @throws WorkloadException when RAM or the vCPU count is impossible, or the region too small
     */
    public static RegionLayout of(long memSize, int vcpus) {
        if (vcpus < 1 || vcpus > BootProtocol.MAX_VCPUS) {
            throw new WorkloadException("vCPU count " + vcpus + " is outside 1.." + BootProtocol.MAX_VCPUS
                    + " (the boot protocol has " + BootProtocol.MAX_VCPUS + " stacks)");
        }
        if (memSize > BootProtocol.MAX_RAM) {
            throw new WorkloadException("guest RAM of " + mib(memSize) + " exceeds the boot protocol's limit of "
                    + (BootProtocol.MAX_RAM >> 30) + " GiB");
        }
        if (memSize % PAGE != 0) {
            throw new WorkloadException("guest RAM of " + memSize + " bytes is not a whole number of 4 KiB pages");
        }
        long start = (LOAD_GPA + IMAGE_RESERVE + REGION_ALIGN - 1) & -REGION_ALIGN;
        long pages = memSize > start ? (memSize - start) / PAGE : 0;
        if (pages < vcpus) {
            throw new WorkloadException("guest RAM of " + mib(memSize) + " leaves " + pages + " pages above 0x"
                    + Long.toHexString(start) + " for the workload region, fewer than one per vCPU for " + vcpus
                    + " vCPUs; give the guest at least " + mib(start + vcpus * PAGE));
        }
        return new RegionLayout(start, memSize, vcpus, pages / vcpus);
    }

    public long sliceBytes() { return pagesPerVcpu * PAGE; }

    /** First byte of vCPU {@code vcpu}'s slice. */
    public long sliceStart(int vcpu) {
        if (vcpu < 0 || vcpu >= vcpus) throw new IllegalArgumentException("vCPU " + vcpu + " outside 0.." + (vcpus - 1));
        return regionStart + vcpu * sliceBytes();
    }

    /** First byte after vCPU {@code vcpu}'s slice. */
    public long sliceEnd(int vcpu) { return sliceStart(vcpu) + sliceBytes(); }

    static String mib(long bytes) {
        return bytes % (1L << 20) == 0 ? (bytes >> 20) + " MiB" : bytes + " bytes";
    }
}
