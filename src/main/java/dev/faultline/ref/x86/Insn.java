package dev.faultline.ref.x86;

/**
 * One decoded instruction, cached per guest code page and executed many times. Compact and
 * position-independent: a RIP-relative operand keeps its displacement relative to the next
 * instruction, so one decoded page serves every virtual address that maps the physical page.
 *
 * <p>Registers use the x86 encoding (0..15); byte registers AH..BH (no REX) are 20..23; an absent
 * base or index is {@link CpuState#NONE}. Written once by {@link Decoder}, then read-only.
 */
public final class Insn {
    /** Operation ({@link Op}). */
    public int op;
    /** Sub-operation: ALU kind, condition code, shift kind... depending on {@link #op}. */
    public int sub;
    /** Operand size in bytes (1, 2, 4, 8). */
    public int size;
    /** Second size: the source of movzx/movsx, the operand of a string instruction... */
    public int size2;
    /** The ModRM reg operand (or the register encoded in the opcode). */
    public int reg;
    /** The ModRM r/m register when {@link #mem} is false. */
    public int rm;
    public boolean mem;
    public int base = CpuState.NONE, index = CpuState.NONE, scale;
    public long disp;
    public boolean ripRel, addr32;
    /** Segment override whose base applies: 0 none, 4 FS, 5 GS. */
    public int seg;
    public long imm;
    public int len;
    public boolean lock, rep, repne;
    /** True when the instruction's bytes run into the next page (never cached). */
    public boolean crossesPage;
    /** The raw bytes, kept for instructions that end in an emulation-failure exit. */
    public byte[] bytes;
    /** Why the instruction is rejected ({@link Op#UNSUPPORTED}). */
    public String why;

    void reset() {
        op = 0; sub = 0; size = 0; size2 = 0; reg = 0; rm = 0; mem = false;
        base = CpuState.NONE; index = CpuState.NONE; scale = 0; disp = 0; ripRel = false; addr32 = false; seg = 0;
        imm = 0; len = 0; lock = false; rep = false; repne = false; crossesPage = false; bytes = null; why = null;
    }
}
