package dev.faultline.guest.workload;

import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.asm.Label;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * hot and phases: a working set of W pages stamped R times over (R rounds), and, for phases, moved
 * P times through the slice. Phase p's window starts at page {@code p * shift} with
 * {@code shift = (S - W) / (P - 1)} (S: slice pages), so the first phase works at the start of the
 * slice and the last at its end; windows overlap when {@code P * W > S}. Round r of phase p stamps
 * round number {@code g = p * R + r}. phases reports the phase number at the start of each phase
 * (a progress signal for migration demos); hot reports nothing.
 */
final class WorkingSet extends BaseWorkload {
    private final long windowPages, shiftPages;
    private final int phases, rounds;
    private final boolean reportPhases;

    WorkingSet(String name, WorkloadParams params, int phases, long defaultWindow, boolean reportPhases) {
        super(name, params);
        long s = layout.pagesPerVcpu();
        this.windowPages = params.workingSetPages() == 0 ? Math.max(1, Math.min(s, defaultWindow)) : params.workingSetPages();
        this.phases = phases;
        this.rounds = params.rounds();
        this.reportPhases = reportPhases;
        if (windowPages < 1 || windowPages > s) {
            throw new WorkloadException(name + ": working set of " + windowPages + " pages does not fit a slice of " + s
                    + " pages (" + layout.vcpus() + " vCPUs in " + RegionLayout.mib(params.memSize()) + ")");
        }
        if (rounds < 1) throw new WorkloadException(name + ": rounds " + rounds + " must be at least 1");
        if (phases < 1) throw new WorkloadException(name + ": phases " + phases + " must be at least 1");
        this.shiftPages = phases > 1 ? (s - windowPages) / (phases - 1) : 0;
        build();
    }

    @Override
    void body(GuestCode g) {
        var a = g.a;
        a.xor(R15D, R15D).xor(R11D, R11D); // r15 = phase, r11 = global round
        Label phase = a.here();
        if (reportPhases) a.mov(RAX, R15).call(g.reportLabel());
        a.mov(R9, g.constant(shiftPages * RegionLayout.PAGE)).imul(R9, R15).add(R9, R12) // window start
                .mov(R10, g.constant(rounds));
        Label round = a.here();
        a.mov(RBX, R11).and(RBX, PageStamp.ROUND_MASK).shl(RBX, PageStamp.ROUND_SHIFT).or(RBX, R14)
                .mov(RAX, R9).mov(RCX, R9).add(RCX, g.constant(windowPages * RegionLayout.PAGE)).mov(R8, RegionLayout.PAGE);
        g.stampPages();
        a.inc(R11).dec(R10).jnz(round)
                .inc(R15).cmp(R15, g.constant(phases)).jb(phase);
    }

    @Override
    long expectedWord(int vcpu, long page) {
        long p = shiftPages == 0 ? phases - 1 : Math.min(phases - 1, page / shiftPages);
        if (page < p * shiftPages || page >= p * shiftPages + windowPages) return UNTOUCHED;
        long lastRound = p * rounds + rounds - 1;
        return PageStamp.of(layout.sliceStart(vcpu) + page * RegionLayout.PAGE, vcpu, lastRound);
    }

    @Override
    public List<Long> expectedReports(int vcpu, MemorySegment ram) {
        requireVcpu(vcpu);
        List<Long> r = new ArrayList<>();
        if (reportPhases) for (long p = 0; p < phases; p++) r.add(p);
        return r;
    }

    @Override
    public long touchesPerVcpu() { return (long) phases * rounds * windowPages; }

    @Override
    String parameters() {
        return ", working set " + windowPages + " pages, " + rounds + " rounds" + (name.equals("hot") ? "" : " x " + phases + " phases");
    }
}
