package dev.faultline.guest.workload;

import static dev.faultline.guest.asm.Mem.*;
import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.asm.Label;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/**
 * seq-read: each vCPU reads the first word of every page of its slice in address order and reports
 * their sum (mod 2^64), so a read of the wrong page content shows in the report.
 */
final class SequentialRead extends BaseWorkload {
    SequentialRead(WorkloadParams params) {
        super("seq-read", params);
        build();
    }

    @Override
    void body(GuestCode g) {
        g.a.xor(R9D, R9D).mov(RAX, R12);
        Label loop = g.a.here();
        g.a.add(R9, m64(RAX)).add(RAX, RegionLayout.PAGE).cmp(RAX, R13).jb(loop);
        g.a.mov(RAX, R9);
        g.reportRax();
    }

    @Override
    public List<Long> expectedReports(int vcpu, MemorySegment ram) {
        long sum = 0;
        for (long gpa = layout.sliceStart(vcpu); gpa < layout.sliceEnd(vcpu); gpa += RegionLayout.PAGE) {
            sum += ram.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa);
        }
        return List.of(sum);
    }

    @Override
    public long touchesPerVcpu() { return layout.pagesPerVcpu(); }
}
