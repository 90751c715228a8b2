package dev.faultline.guest.asm;

/**
 * A memory operand: {@code [base + index*scale + disp]}, {@code [disp32]} (no base, no index), or
 * RIP-relative ({@code [rip + disp32]}, or the address of a {@link Label}). Addresses are 64-bit:
 * base and index are 64-bit registers. {@code bits} is the size of the access (8, 16, 32, 64), or 0
 * for operands that only compute an address ({@link Assembler#lea}).
 *
 * <p>Factories are named after the access size, so code reads like Intel syntax:
 * {@code m64(RBX, RCX, 8, 16)} is {@code qword ptr [rbx + rcx*8 + 16]}.
 */
public record Mem(int bits, Reg base, Reg index, int scale, long disp, boolean ripRelative, Label target)
        implements Operand {

    public Mem {
        if (bits != 0 && bits != 8 && bits != 16 && bits != 32 && bits != 64) {
            throw new IllegalArgumentException("memory access size " + bits + " is not 8, 16, 32 or 64 bits");
        }
        if (base != null && base.bits() != 64) {
            throw new IllegalArgumentException("base register " + base + " must be 64-bit (only 64-bit addressing is supported)");
        }
        if (index == null) {
            scale = 1; // no index: the SIB scale field means nothing, and GNU as writes 0 there
        } else {
            if (index.bits() != 64) {
                throw new IllegalArgumentException("index register " + index + " must be 64-bit (only 64-bit addressing is supported)");
            }
            if (index.number() == 4) throw new IllegalArgumentException("rsp cannot be an index register");
            if (scale != 1 && scale != 2 && scale != 4 && scale != 8) {
                throw new IllegalArgumentException("scale " + scale + " is not 1, 2, 4 or 8");
            }
        }
        if (disp != (int) disp) {
            throw new IllegalArgumentException("displacement " + disp + " does not fit a signed 32-bit field");
        }
        if (ripRelative && (base != null || index != null)) {
            throw new IllegalArgumentException("a RIP-relative operand has no base or index register");
        }
    }

    public static Mem m8(Reg base) { return new Mem(8, base, null, 1, 0, false, null); }
    public static Mem m16(Reg base) { return new Mem(16, base, null, 1, 0, false, null); }
    public static Mem m32(Reg base) { return new Mem(32, base, null, 1, 0, false, null); }
    public static Mem m64(Reg base) { return new Mem(64, base, null, 1, 0, false, null); }

    public static Mem m8(Reg base, long disp) { return new Mem(8, base, null, 1, disp, false, null); }
    public static Mem m16(Reg base, long disp) { return new Mem(16, base, null, 1, disp, false, null); }
    public static Mem m32(Reg base, long disp) { return new Mem(32, base, null, 1, disp, false, null); }
    public static Mem m64(Reg base, long disp) { return new Mem(64, base, null, 1, disp, false, null); }

    /** {@code [base + index*scale + disp]}; {@code base} may be null for {@code [index*scale + disp32]}. */
    public static Mem m8(Reg base, Reg index, int scale, long disp) { return new Mem(8, base, index, scale, disp, false, null); }
    public static Mem m16(Reg base, Reg index, int scale, long disp) { return new Mem(16, base, index, scale, disp, false, null); }
    public static Mem m32(Reg base, Reg index, int scale, long disp) { return new Mem(32, base, index, scale, disp, false, null); }
    public static Mem m64(Reg base, Reg index, int scale, long disp) { return new Mem(64, base, index, scale, disp, false, null); }

    /** RIP-relative reference to a label: the assembler computes the displacement. */
    public static Mem m8(Label target) { return new Mem(8, null, null, 1, 0, true, target); }
    public static Mem m16(Label target) { return new Mem(16, null, null, 1, 0, true, target); }
    public static Mem m32(Label target) { return new Mem(32, null, null, 1, 0, true, target); }
    public static Mem m64(Label target) { return new Mem(64, null, null, 1, 0, true, target); }

    /** An address without an access size, for lea: {@code [base + index*scale + disp]}. */
    public static Mem addr(Reg base, Reg index, int scale, long disp) { return new Mem(0, base, index, scale, disp, false, null); }
    public static Mem addr(Reg base, long disp) { return new Mem(0, base, null, 1, disp, false, null); }
    /** The address of a label, RIP-relative, for lea. */
    public static Mem addr(Label target) { return new Mem(0, null, null, 1, 0, true, target); }

    /** {@code [rip + disp]} with an explicit displacement (counted from the end of the instruction). */
    public static Mem rip(int bits, int disp) { return new Mem(bits, null, null, 1, disp, true, null); }

    /** {@code [disp32]}: an absolute address (sign-extended 32-bit), encoded with a SIB byte. */
    public static Mem abs(int bits, long address) { return new Mem(bits, null, null, 1, address, false, null); }

    /** The same address with another access size. */
    public Mem withBits(int newBits) { return new Mem(newBits, base, index, scale, disp, ripRelative, target); }

    /** GNU as Intel-syntax spelling, e.g. {@code qword ptr [rbx + rcx*8 + 16]}. */
    @Override public String toString() {
        String size = switch (bits) {
            case 8 -> "byte ptr ";
            case 16 -> "word ptr ";
            case 32 -> "dword ptr ";
            case 64 -> "qword ptr ";
            default -> "";
        };
        StringBuilder sb = new StringBuilder(size).append('[');
        if (ripRelative) {
            sb.append("rip");
            if (target != null) sb.append(" + ").append(target.name());
            else if (disp != 0) sb.append(disp < 0 ? " - " : " + ").append(Math.abs(disp));
            return sb.append(']').toString();
        }
        boolean any = false;
        if (base != null) { sb.append(base.name()); any = true; }
        if (index != null) {
            if (any) sb.append(" + ");
            sb.append(index.name()).append('*').append(scale);
            any = true;
        }
        if (!any) sb.append(disp);
        else if (disp != 0) sb.append(disp < 0 ? " - " : " + ").append(Math.abs(disp));
        return sb.append(']').toString();
    }
}
