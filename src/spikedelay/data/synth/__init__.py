"""SynthDigits: an offline spoken-word spike data set in the SHD layout.

espeak-ng speaks the words (:mod:`.speech`), a fast version of the Heidelberg cochlea turns them
into spikes (:mod:`.cochlea`), :func:`build_synthdigits` writes the files (:mod:`.build`).
"""

from spikedelay.data.synth.build import build_synthdigits

__all__ = ["build_synthdigits"]
