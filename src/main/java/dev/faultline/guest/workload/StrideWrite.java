package dev.faultline.guest.workload;

import static dev.faultline.guest.asm.Reg.*;

/** seq-write and stride: each vCPU stamps every k-th page of its slice, once, in address order. */
final class StrideWrite extends BaseWorkload {
    private final int stride;

    StrideWrite(String name, WorkloadParams params, int stride) {
        super(name, params);
        if (stride < 1) throw new WorkloadException(name + ": stride " + stride + " must be at least 1 page");
        this.stride = stride;
        build();
    }

    @Override
    void body(GuestCode g) {
        g.a.mov(RBX, R14).mov(RAX, R12).mov(RCX, R13).mov(R8, g.constant(stride * RegionLayout.PAGE));
        g.stampPages();
    }

    @Override
    long expectedWord(int vcpu, long page) {
        return page % stride == 0 ? PageStamp.of(layout.sliceStart(vcpu) + page * RegionLayout.PAGE, vcpu, 0) : UNTOUCHED;
    }

    @Override
    public long touchesPerVcpu() { return (layout.pagesPerVcpu() + stride - 1) / stride; }

    @Override
    String parameters() { return stride == 1 ? "" : ", stride " + stride; }
}
