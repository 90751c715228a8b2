package dev.faultline.guest.workload;

import static dev.faultline.guest.asm.Mem.*;
import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.asm.Label;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * checksum: each vCPU computes the {@link WordChecksum} of every word of its slice and reports it.
 * Eight words per loop iteration, two instructions per word.
 */
final class RegionChecksum extends BaseWorkload {
    RegionChecksum(WorkloadParams params) {
        super("checksum", params);
        build();
    }

    @Override
    void body(GuestCode g) {
        g.a.mov(R9, WordChecksum.OFFSET_BASIS).mov(R10, WordChecksum.PRIME).mov(RAX, R12);
        Label loop = g.a.here();
        for (int i = 0; i < 8; i++) g.a.xor(R9, m64(RAX, 8 * i)).imul(R9, R10);
        g.a.add(RAX, 64).cmp(RAX, R13).jb(loop);
        g.a.mov(RAX, R9);
        g.reportRax();
    }

    @Override
    public List<Long> expectedReports(int vcpu, MemorySegment ram) {
        return List.of(WordChecksum.of(ram, layout.sliceStart(vcpu), layout.sliceEnd(vcpu)));
    }

    @Override
    public long touchesPerVcpu() { return layout.pagesPerVcpu(); }
}
