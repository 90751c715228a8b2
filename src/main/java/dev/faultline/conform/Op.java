package dev.faultline.conform;

import dev.faultline.guest.asm.Assembler;
import java.util.function.Consumer;

/**
 * One self-contained step of a generated program: it needs nothing from the steps before it beyond
 * the invariants every program keeps (RSP is the stack, R15 points at the data area), so any subset
 * of a program's steps is still a valid program. That is what makes shrinking possible. The one thing
 * a step may take from the steps before it is the status flags it reads: {@link #flags} says which
 * ones it reads and how it changes which are defined, so a subset can be checked (a step whose flags
 * were defined by a dropped step may read undefined ones).
 */
record Op(String text, Consumer<Assembler> emit, FlagFlow flags) {
    @Override
    public String toString() {
        return text;
    }
}
