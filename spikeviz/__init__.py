"""spikeviz: train spiking neural networks by backpropagation on spike events, and watch them learn.

Data flows one way: dataset -> event encoder -> engine -> trainer -> recorder -> views.
"""

__version__ = "0.1.0"
