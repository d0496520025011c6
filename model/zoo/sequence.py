"""Recurrent models: an RNN-T speech transducer, an LSTM sequence-to-sequence translator and a
CNN + LSTM image captioner.

These run step by step on a device, so each network is one *invocation*: ``T`` (the middle of an
LSTM's ``(N, T, C)`` shape) is the number of steps that invocation processes, stated per model.
Token embeddings are table look-ups without multiply-accumulates; they happen on the host, and an
embedded token enters the network as a named extra input (its table is not counted in the
parameters).
"""

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation
from mensa.model.zoo.mobilenet import mobilenet_v2_features

__all__ = ["rnnt", "seq2seq", "captioning"]


def rnnt(*, features=320, units=2048, projection=640, encoder_layers=8, reduction_after=2,
         reduction=2, prediction_layers=2, embedding=128, joint=640, vocabulary=4096):
    """Streaming RNN-T speech recogniser after He et al., "Streaming end-to-end speech recognition
    for mobile devices" (ICASSP 2019).

    Encoder: ``encoder_layers`` LSTM layers of ``units`` cells with a ``projection``-wide output;
    a time-reduction layer after layer ``reduction_after`` stacks ``reduction`` consecutive frames
    (a reshape in the IR). Prediction network: ``prediction_layers`` such layers on the embedded
    previous label. Joint network: the two outputs projected to ``joint`` units, added, tanh,
    then a ``vocabulary``-way output (word pieces).

    One invocation produces one encoder frame: it consumes ``reduction`` acoustic frames (80
    log-mel x 4 stacked = 320 features, 30 ms each), so the encoder layers below the time
    reduction run ``T = reduction`` steps and those above it ``T = 1``; the prediction network and
    the joint network run one step (one label), i.e. one (t, u) point of the output lattice.
    """
    b = NetworkBuilder("rnnt", (1, reduction, features), kind="transducer")
    x = b.input
    for i in range(encoder_layers):
        if i == reduction_after:
            n, t, c = x.shape
            x = b.reshape(x, (n, t // reduction, c * reduction))
        x = b.lstm(x, units, projection=projection, name=f"enc_lstm{i}")
    enc = x
    y = b.add_input("label", (1, 1, embedding))
    for i in range(prediction_layers):
        y = b.lstm(y, units, projection=projection, name=f"pred_lstm{i}")
    e = b.fc(enc, joint, name="joint_enc")
    p = b.fc(y, joint, name="joint_pred")
    j = b.add(e, p, activation=Activation.TANH, name="joint_add")
    b.fc(j, vocabulary, name="joint_out")
    return b.build()


def seq2seq(*, source_length=20, embedding=512, units=1024, encoder_layers=2, decoder_layers=2,
            vocabulary=16000):
    """LSTM sequence-to-sequence translator (Sutskever et al., NIPS 2014, without attention), sized for
    the edge by mensa (the defaults are our choice).

    The encoder reads a whole sentence, ``T = source_length`` embedded tokens. The decoder is
    autoregressive: one invocation emits one target token, so its layers run ``T = 1`` and its
    input is the embedded previous token (extra input ``target``). The encoder's final state
    initialises the decoder's; that hand-over is not a data edge of the IR, so the encoder's
    output is a network output.
    """
    b = NetworkBuilder("seq2seq", (1, source_length, embedding), kind="lstm")
    x = b.input
    for i in range(encoder_layers):
        x = b.lstm(x, units, name=f"enc_lstm{i}")
    y = b.add_input("target", (1, 1, embedding))
    for i in range(decoder_layers):
        y = b.lstm(y, units, name=f"dec_lstm{i}")
    b.fc(y, vocabulary, name="dec_out")
    return b.build()


def captioning(*, resolution=224, width=1.0, embedding=512, units=512, vocabulary=10000):
    """Image captioning after Vinyals et al., "Show and tell" (CVPR 2015), with a MobileNetV2
    encoder for the edge.

    One invocation emits one word (``T = 1``): the pooled image features are projected to
    ``embedding`` and concatenated with the embedded previous word (extra input ``word``), then an
    LSTM of ``units`` cells and a ``vocabulary``-way output. The CNN part is computed once per
    image in practice; it is in the same network so the model shows both families side by side.
    """
    b = NetworkBuilder("captioning", (1, resolution, resolution, 3), kind="hybrid")
    x = mobilenet_v2_features(b, b.input, width=width)
    x = b.global_avgpool(x, name="pool")
    img = b.fc(b.flatten(x), embedding, name="image_embed")
    word = b.add_input("word", (1, 1, embedding))
    x = b.concat(b.reshape(img, (1, 1, embedding)), word, name="step_input")
    x = b.lstm(x, units, name="lstm")
    b.fc(x, vocabulary, name="word_out")
    return b.build()
