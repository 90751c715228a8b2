package dev.faultline.conform;

import dev.faultline.ref.x86.FlagEffect;
import java.util.List;

/**
 * How one step of a generated program changes which status flags hold architecturally defined values
 * (a mask of RFLAGS bits; {@link FlagEffect} says what each instruction does), and whether it reads one
 * that may not. A flag is "defined" at a point only if it is defined on every path that reaches it:
 * paths join by intersection.
 *
 * <p>Undefined flags are where CPUs (and KVM's instruction emulator) legitimately differ, so a program
 * that reads one can disagree between two correct backends. The generator never emits such a read, and
 * the comparison ignores the flags still undefined when a program ends.
 */
@FunctionalInterface
interface FlagFlow {
    /**
     * The flags defined after the step, given those defined before it.
     * @throws UndefinedFlagRead if the step reads a flag that may be undefined
     */
    long after(long defined);

    /** Thrown when a step reads a status flag that may be undefined at that point. */
    final class UndefinedFlagRead extends IllegalStateException {
        private static final long serialVersionUID = 1L;
        private final long flags;

        UndefinedFlagRead(String step, long flags) {
            super("`" + step + "` reads " + FlagEffect.names(flags) + ", which may be undefined there");
            this.flags = flags;
        }

        /** The flags read that may be undefined. */
        long flags() { return flags; }
    }

    /** Straight-line instructions, in order. */
    static FlagFlow instructions(String text, FlagEffect... effects) {
        return defined -> {
            long d = defined;
            for (FlagEffect e : effects) d = apply(text, e, d);
            return d;
        };
    }

    /** The steps in order. */
    static FlagFlow sequence(List<Op> steps) {
        return defined -> {
            long d = defined;
            for (Op op : steps) d = op.flags().after(d);
            return d;
        };
    }

    /** {@code first} then {@code then}. */
    static FlagFlow sequence(FlagFlow first, FlagFlow then) {
        return defined -> then.after(first.after(defined));
    }

    /**
     * A conditional forward branch over {@code inner}: reads condition {@code cc}; afterwards the flags
     * are what both the taken path (unchanged) and the path through {@code inner} define.
     */
    static FlagFlow branchOver(String text, int cc, List<Op> inner) {
        FlagFlow body = sequence(inner);
        FlagEffect jcc = FlagEffect.reading(FlagEffect.condition(cc));
        return defined -> {
            long d = apply(text, jcc, defined);
            return d & body.after(d);
        };
    }

    /**
     * A loop that runs {@code inner} then {@code latch} (the counter's decrement and the conditional
     * branch back) at least once. The flags at the top are those of the entry joined with those at every
     * back edge: iterated to the fixed point, which the loop's exit sees.
     */
    static FlagFlow loop(String text, List<Op> inner, FlagEffect... latch) {
        FlagFlow body = sequence(sequence(inner), instructions(text, latch));
        return defined -> {
            long top = defined;
            while (true) {
                long out = body.after(top);
                long next = defined & out;
                if (next == top) return out;
                top = next;
            }
        };
    }

    private static long apply(String text, FlagEffect e, long defined) {
        long missing = e.reads() & ~defined;
        if (missing != 0) throw new UndefinedFlagRead(text, missing);
        return e.after(defined);
    }
}
