"""Example Streamlit app, created by the codestudio streamlit block.

Edit this file in the studio (or in the project's versioned files and sync):
Streamlit reruns the app when it changes.
"""

import os

import numpy as np
import pandas as pd
import streamlit as st

st.set_page_config(page_title="Code Studio app")
st.title("Hello from your Code Studio")
st.write("This app lives in `streamlit/app.py` of the studio's versioned files.")

points = st.slider("Number of points", min_value=10, max_value=500, value=100)
rng = np.random.default_rng(seed=points)
data = pd.DataFrame(rng.standard_normal((points, 2)).cumsum(axis=0), columns=["a", "b"])
st.line_chart(data)

with st.expander("Where am I served?"):
    st.code(os.environ.get("DKU_CODE_STUDIO_BROWSER_PATH", "(not in a studio)"))
