pragma circom 2.0.0;

// A chain of cubes: s[0] = x, s[i+1] = (s[i] + k + i)^3 over the BN254 scalar field.
// Each round costs two multiplication constraints, so proving time grows with n;
// paas_examples/groth16.py reads n from the `main` line and recomputes y in Python.
// k is public and x private: the proof shows "I know an x that leads to y under k".

template Chain(n) {
    signal input x;
    signal input k;
    signal output y;

    signal s[n + 1];
    signal sq[n];

    s[0] <== x;
    for (var i = 0; i < n; i++) {
        sq[i] <== (s[i] + k + i) * (s[i] + k + i);
        s[i + 1] <== sq[i] * (s[i] + k + i);
    }
    y <== s[n];
}

component main {public [k]} = Chain(3000);
