package dev.faultline.guest.asm;

/**
 * A position in the code, bound once with {@link Assembler#bind(Label)} and usable before
 * (forward) or after (backward) it is bound. Belongs to the assembler that created it.
 */
public final class Label {
    final Assembler owner;
    final String name;
    /** Index of the bind item in the owner's item list, or -1 while unbound. */
    int item = -1;

    Label(Assembler owner, String name) {
        this.owner = owner;
        this.name = name;
    }

    public String name() { return name; }

    public boolean isBound() { return item >= 0; }

    @Override public String toString() { return name; }
}
