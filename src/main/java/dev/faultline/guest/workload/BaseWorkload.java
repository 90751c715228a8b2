package dev.faultline.guest.workload;

import dev.faultline.guest.GuestImage;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/** What all workloads share: their shape, their image, and checking stamped pages. */
abstract sealed class BaseWorkload implements Workload
        permits StrideWrite, SequentialRead, RandomTouch, WorkingSet, RegionChecksum {
    /** From {@link #expectedWord}: the workload does not write this page. */
    static final long UNTOUCHED = 0;

    final String name;
    final WorkloadParams params;
    final RegionLayout layout;
    private GuestImage image;

    BaseWorkload(String name, WorkloadParams params) {
        this.name = name;
        this.params = params;
        this.layout = RegionLayout.of(params.memSize(), params.vcpus());
    }

    /** Builds the image; subclasses call it last in their constructor, once their fields are set. */
    final void build() {
        GuestCode g = new GuestCode(layout);
        body(g);
        image = g.finish();
    }

    /** Emits the workload's code between the common entry and the common end. */
    abstract void body(GuestCode g);

    /** The word page {@code page} of vCPU {@code vcpu}'s slice holds after the run, or {@link #UNTOUCHED}. */
    long expectedWord(int vcpu, long page) { return UNTOUCHED; }

    @Override public String name() { return name; }
    @Override public WorkloadParams params() { return params; }
    @Override public RegionLayout layout() { return layout; }
    @Override public GuestImage image() { return image; }
    @Override
    public List<Long> expectedReports(int vcpu, MemorySegment ram) {
        requireVcpu(vcpu);
        return List.of();
    }

    final void requireVcpu(int vcpu) {
        if (vcpu < 0 || vcpu >= layout.vcpus()) {
            throw new IllegalArgumentException(name + ": vCPU " + vcpu + " outside 0.." + (layout.vcpus() - 1));
        }
    }

    @Override
    public String description() {
        return name + ": " + layout.vcpus() + " vCPU" + (layout.vcpus() == 1 ? "" : "s") + " x " + layout.pagesPerVcpu()
                + " pages from 0x" + Long.toHexString(layout.regionStart()) + parameters();
    }

    /** ", stride 8" and the like, for {@link #description()}. */
    String parameters() { return ""; }

    @Override
    public void verify(MemorySegment ram) {
        if (ram.byteSize() < params.memSize()) {
            throw new IllegalArgumentException("RAM segment of " + ram.byteSize() + " bytes is smaller than the workload's "
                    + params.memSize());
        }
        long bad = 0, checked = 0, firstGpa = -1, firstWant = 0, firstHave = 0;
        for (int v = 0; v < layout.vcpus(); v++) {
            long base = layout.sliceStart(v);
            for (long p = 0; p < layout.pagesPerVcpu(); p++) {
                long want = expectedWord(v, p);
                if (want == UNTOUCHED) continue;
                checked++;
                long gpa = base + p * RegionLayout.PAGE;
                long have = ram.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa);
                if (have != want) {
                    if (bad++ == 0) {
                        firstGpa = gpa;
                        firstWant = want;
                        firstHave = have;
                    }
                }
            }
        }
        if (bad > 0) {
            throw new WorkloadMismatchException(name + ": " + bad + " of " + checked + " stamped pages differ; first at gpa 0x"
                    + Long.toHexString(firstGpa) + ": expected 0x" + Long.toHexString(firstWant) + " (" + PageStamp.describe(firstWant)
                    + "), found 0x" + Long.toHexString(firstHave) + " (" + PageStamp.describe(firstHave) + ")", bad, firstGpa);
        }
    }
}
