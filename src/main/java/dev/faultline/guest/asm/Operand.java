package dev.faultline.guest.asm;

/** An instruction operand that ModRM can address: a register or a memory reference. */
public sealed interface Operand permits Reg, Mem {
    /** Operand size in bits (8, 16, 32, 64), or 0 for a memory reference without a size (lea). */
    int bits();
}
