package dev.faultline.conform;

import static dev.faultline.ref.x86.CpuState.CF;

import dev.faultline.guest.asm.Cond;
import dev.faultline.guest.asm.Label;
import dev.faultline.guest.asm.Reg;
import dev.faultline.ref.x86.FlagEffect;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Generates random guest programs from the instruction subset both backends support: the
 * straight-line steps of {@link InstructionSteps} (arithmetic and flags at every operand size, loads
 * and stores inside RAM, string stores, port I/O, MMIO above RAM), forward branches, bounded loops and
 * calls. Every step is self-contained ({@link Op}). The same (seed, index) always gives the same
 * program.
 *
 * <p>It tracks which status flags are defined at each point ({@link FlagFlow}, from ref's table
 * {@link FlagEffect}) and never emits a step that reads one that may be undefined (a div then a
 * cmove, a shift by CL then a jo): such a step gets a flag-defining instruction (cmp, test, add, and,
 * neg, inc...) put before it. That happens in one place ({@link #next}) for every kind of step.
 */
final class ProgramGenerator {
    /** Registers steps may change: everything but RSP (the stack) and R15 (the data area). */
    private static final int[] POOL = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    /** The pool without RCX, for the bodies of loops that count in RCX. */
    private static final int[] POOL_NO_RCX = {0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

    private final SplittableRandom rnd;
    private final InstructionSteps steps;
    private final long seed;
    private final int index;
    /** The status flags defined at the point the next step goes (FlagFlow). */
    private long defined;

    ProgramGenerator(long seed, int index) {
        this.seed = seed;
        this.index = index;
        this.rnd = new SplittableRandom(seed * 0x9e3779b97f4a7c15L + index);
        this.steps = new InstructionSteps(rnd);
    }

    Program generate(int count) {
        long[] init = new long[16];
        for (int r = 0; r < 16; r++) init[r] = steps.value(64);
        defined = FlagEffect.STATUS;  // RFLAGS starts at 0x2: every flag has a known value
        List<Op> ops = new ArrayList<>();
        for (int i = 0; i < count; i++) ops.add(next(POOL, 2));
        return new Program(seed, index, init, ops);
    }

    /**
     * Draws the step at the current point and moves the point past it. A step that reads a flag which
     * may be undefined here gets a flag-defining instruction first.
     */
    private Op next(int[] pool, int depth) {
        Op op = step(pool, depth);
        try {
            defined = op.flags().after(defined);
        } catch (FlagFlow.UndefinedFlagRead e) {
            op = InstructionSteps.then(steps.definer(pool, e.flags(), defined), op);
            defined = op.flags().after(defined);  // a step that still reads an undefined flag is a generator bug: thrown
        }
        return op;
    }

    /**
     * One step. Inside a loop body ({@code pool} without RCX) nothing may write RCX, the loop's counter:
     * string steps and nested loops (which use RCX) are drawn again.
     */
    private Op step(int[] pool, int depth) {
        boolean inLoop = pool == POOL_NO_RCX;
        while (true) {
            Op op = draw(pool, depth);
            if (!inLoop || !(op.text().startsWith("rep ") || op.text().startsWith("loop "))) return op;
        }
    }

    private Op draw(int[] pool, int depth) {
        int k = rnd.nextInt(depth > 0 ? 100 : 80);
        if (k < 22) return steps.aluRegReg(pool);
        if (k < 32) return steps.aluRegImm(pool);
        if (k < 38) return steps.aluMem(pool);
        if (k < 42) return steps.unary(pool);
        if (k < 48) return steps.shift(pool);
        if (k < 52) return steps.multiply(pool);
        if (k < 55) return steps.divide(pool);
        if (k < 59) return steps.extend(pool);
        if (k < 62) return steps.lea(pool);
        if (k < 66) return steps.setOrCmov(pool);
        if (k < 70) return steps.loadStore(pool);
        if (k < 72) return steps.pushPop(pool);
        if (k < 75) return steps.exchange(pool);
        if (k < 77) return steps.bitScan(pool);
        if (k < 78) return steps.portIo(pool);
        if (k < 79) return steps.mmio(pool);
        if (k < 80) return steps.stringStore();
        if (k < 87) return forwardBranch(pool, depth);
        if (k < 94) return loop(depth);
        return call(pool, depth);
    }

    /**
     * Generates the body of a branch, loop or call: steps drawn as if the flags defined on entry were
     * {@code entry}. The point of the enclosing step is left where it was.
     */
    private List<Op> body(int[] pool, int depth, int max, long entry) {
        long outer = defined;
        defined = entry;
        int n = 1 + rnd.nextInt(max);
        List<Op> ops = new ArrayList<>();
        for (int i = 0; i < n; i++) ops.add(next(pool, depth - 1));
        defined = outer;
        return ops;
    }

    /** A conditional jump over a few steps; its condition's flags are defined first when they may not be. */
    private Op forwardBranch(int[] pool, int depth) {
        Cond c = Cond.values()[rnd.nextInt(16)];
        Op definer = steps.definer(pool, FlagEffect.condition(c.code()), defined);
        long entry = definer == null ? defined : definer.flags().after(defined);
        List<Op> inner = body(pool, depth, 3, entry);
        String text = "j" + c.suffix() + " over " + inner;
        Op branch = new Op(text, a -> {
            Label skip = a.newLabel();
            a.j(c, skip);
            for (Op o : inner) o.emit().accept(a);
            a.bind(skip);
        }, FlagFlow.branchOver(text, c.code(), inner));
        return definer == null ? branch : InstructionSteps.then(definer, branch);
    }

    /**
     * A loop counted in RCX (1..6 iterations; the body never writes RCX). The body is drawn as if CF were
     * undefined on entry: at the top of the loop the flags are those of the entry joined with those after
     * {@code dec ecx}, which defines all but CF, so that is all the back edge can take away.
     */
    private Op loop(int depth) {
        int iterations = 1 + rnd.nextInt(6);
        List<Op> inner = body(POOL_NO_RCX, depth, 3, defined & ~CF);
        String text = "loop x" + iterations + " " + inner;
        return new Op(text, a -> {
            Label top = a.newLabel();
            a.push(Reg.RCX);
            a.mov(Reg.ECX, iterations);
            a.bind(top);
            for (Op o : inner) o.emit().accept(a);
            a.dec(Reg.ECX);
            a.jnz(top);
            a.pop(Reg.RCX);
        }, FlagFlow.loop(text, inner, FlagEffect.incDec(), FlagEffect.reading(FlagEffect.condition(Cond.NE.code()))));
    }

    private Op call(int[] pool, int depth) {
        List<Op> inner = body(pool, depth, 3, defined);
        return new Op("call { " + inner + " }", a -> {
            Label sub = a.newLabel(), over = a.newLabel();
            a.jmp(over);
            a.bind(sub);
            for (Op o : inner) o.emit().accept(a);
            a.ret();
            a.bind(over);
            a.call(sub);
        }, FlagFlow.sequence(inner));
    }
}

